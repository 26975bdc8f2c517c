"""Regression tests for what the hardening work (issue 8) found broken; see docs/hardening.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigError, MqttConfig, load_config


def test_default_reconnect_backoff_is_back_within_5_s_of_the_broker() -> None:
    # The bus doubles its wait up to reconnect_max_s with +-20 % jitter; the 30 s default left
    # services offline for up to 36 s after a broker came back (tests/faults/test_broker_restart.py).
    assert MqttConfig().reconnect_max_s * 1.2 < 5.0


def test_config_nested_too_deeply_is_a_config_error_not_a_recursion_error(tmp_path: Path) -> None:
    # Found by tests/fuzz/test_config_fuzz.py: RecursionError escaped load_config as a traceback.
    config = tmp_path / "deep.yaml"
    config.write_text("a: " + "[" * 1100 + "]" * 1100)
    with pytest.raises(ConfigError, match="nest"):
        load_config(config)


def test_config_file_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    # Found by tests/fuzz/test_config_fuzz.py: UnicodeDecodeError escaped load_config.
    config = tmp_path / "latin1.yaml"
    config.write_bytes(b"site: caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(config)
