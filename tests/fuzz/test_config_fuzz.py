"""Hostile configuration files: every service's ``--config`` with a fuzzed YAML file exits with
status 2 and a one-paragraph message naming the key (or saying why the file is not a config),
never a traceback.

The files are mutations of the shipped seed scenario (a valid fleet config): an unknown key, a
value of the wrong type, a number out of range or not finite, at any key path; plus files that
are not YAML mappings at all (random text and bytes, deep nesting). Mutations that happen to stay
valid are not bad configs and are skipped (checked with ``load_config`` first, so no service is
ever started by this test). Each entry point runs in-process; one real process per service
checks the exit status and stderr as a supervisor sees them.
"""

from __future__ import annotations

import copy
import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from services.devtools.demo import SCENARIO
from shared.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("inverter_bridge", "bms_bridge", "meter_bridge", "dispatcher", "recorder", "simulator")
BASE: dict[str, Any] = yaml.safe_load(SCENARIO.read_text())


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of the config (mapping keys and list indices) down to its leaves."""
    out: list[tuple[Any, ...]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out.extend(paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(paths(value, (*prefix, index)))
    return out


PATHS = paths(BASE)


def get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


MAPPINGS = [p for p in [(), *PATHS] if isinstance(get(BASE, p), dict)]
LEAVES = [p for p in PATHS if not isinstance(get(BASE, p), dict | list)]

WRONG = st.one_of(
    st.just([1, 2]),
    st.just({"nested": True}),
    st.text(alphabet="abcxyz!? ", min_size=1, max_size=12),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 10**30, -(10**30)]),
    st.sampled_from(["3kW", "50%", "2.5 kWh", "-", "null null", "0x10"]),
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str | None]:
    """YAML text and the key the error message must name (None: the file as a whole is bad)."""
    kind = draw(st.sampled_from(["unknown_key", "wrong_value", "not_a_mapping", "garbage", "deep"]))
    data = copy.deepcopy(BASE)
    if kind == "unknown_key":
        where = draw(st.sampled_from(MAPPINGS))
        key = "zz_" + draw(st.text(alphabet="abcdefgh_", min_size=1, max_size=8))
        get(data, where)[key] = draw(st.one_of(st.integers(), st.text(max_size=5), st.booleans()))
        return yaml.safe_dump(data), key
    if kind == "wrong_value":
        where = draw(st.sampled_from(LEAVES))
        get(data, where[:-1])[where[-1]] = draw(WRONG)
        return yaml.safe_dump(data), str(where[-1])
    if kind == "not_a_mapping":
        return yaml.safe_dump(draw(st.one_of(st.lists(st.integers(), max_size=3), st.text(max_size=20)))), None
    if kind == "deep":
        depth = draw(st.integers(100, 1100))
        return "a: " + "[" * depth + "]" * depth, None
    raw = draw(st.binary(min_size=1, max_size=200))
    return raw.decode("latin-1"), None


def run_main(service: str, config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    main = importlib.import_module(f"services.{service}.__main__").main
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(config)])
    err = capsys.readouterr().err
    return int(exited.value.code or 0), err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutated(), service=st.sampled_from(SERVICES))
def test_fuzzed_config_exits_2_naming_the_key(
    case: tuple[str, str | None], service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, key = case
    config = tmp_path / "fuzzed.yaml"
    config.write_bytes(text.encode("latin-1", errors="replace") if not text.isascii() else text.encode())
    try:
        load_config(config)
    except ConfigError:
        pass
    else:
        assume(False)  # still a valid configuration: not what this test is about
    code, err = run_main(service, config, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith("error: "), err
    if key is not None:
        assert key in err, f"the message does not name {key!r}: {err}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_real_process_exits_2_with_one_message(service: str, tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["mqtt"]["prot"] = 1883
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [sys.executable, "-m", f"services.{service}", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "mqtt.prot: unknown key" in done.stderr
