"""Regression tests for what the hardening work (issue 8) found broken; see docs/hardening.md."""

from __future__ import annotations

from shared.config import MqttConfig


def test_default_reconnect_backoff_is_back_within_5_s_of_the_broker() -> None:
    # The bus doubles its wait up to reconnect_max_s with +-20 % jitter; the 30 s default left
    # services offline for up to 36 s after a broker came back (tests/faults/test_broker_restart.py).
    assert MqttConfig().reconnect_max_s * 1.2 < 5.0
