"""Issue 15 item 4: every configuration error ends a service with status 2 and one message naming
the file, the key and the value; never a traceback. Each service is run as a process, as Docker or
systemd runs it, against a broker port nobody listens on: a configuration error must be reported
without waiting for a broker.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from services.devtools.demo import SCENARIO
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
INVERTER = {"id": "inv1", "battery": "bat1", "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": 1}}
BATTERY = {"id": "bat1", "usable_kwh": 9.6, "transport": {"kind": "serial", "device": "/dev/null"}}
METER = {
    "id": "grid",
    "model": "eastron_sdm120",
    "role": "grid",
    "transport": {"kind": "modbus_rtu", "device": "/dev/null"},
}


def base(tmp_path: Path) -> dict[str, object]:
    return {
        "site": "cfgerr",
        "mqtt": {"host": "127.0.0.1", "port": free_port()},  # nobody listens there
        "inverters": [INVERTER],
        "meters": [METER],
        "batteries": [BATTERY],
        "recorder": {"spool_dir": str(tmp_path / "spool"), "sqlite_path": str(tmp_path / "db.sqlite")},
        "dispatcher": {"state_dir": str(tmp_path / "state")},
    }


def run_service(module: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, "--config", str(config), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_clear_message(done: subprocess.CompletedProcess[str], config: Path, *expected: str) -> str:
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output and "Task exception" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    (line,) = errors
    assert str(config) in line, line
    for text in expected:
        assert text in line, line
    return line


# (service module, what to break, key expected in the message, value expected in the message)
SERVICE_PROBLEMS = [
    pytest.param(
        "services.inverter_bridge",
        lambda c: c["inverters"][0].update(model="eastron_sdm120"),
        "inverters.0.model",
        "'eastron_sdm120'",
        id="inverter-bridge-meter-map",
    ),
    pytest.param(
        "services.inverter_bridge",
        lambda c: c.update(inverters=[]),
        "inverters",
        "[]",
        id="inverter-bridge-no-inverter",
    ),
    pytest.param(
        "services.meter_bridge",
        lambda c: c["meters"][0].update(transport={"kind": "serial", "device": "/dev/null"}),
        "meters.0.transport.kind",
        "'serial'",
        id="meter-bridge-serial-transport",
    ),
    pytest.param(
        "services.bms_bridge",
        lambda c: c["batteries"][0].update(transport={"kind": "modbus_tcp", "host": "h"}),
        "batteries.0.transport.kind",
        "'modbus_tcp'",
        id="bms-bridge-modbus-transport",
    ),
    pytest.param(
        "services.bms_bridge",
        lambda c: c["batteries"][0].pop("transport"),
        "batteries",
        "['bat1']",
        id="bms-bridge-nothing-to-read",
    ),
    pytest.param(
        "services.dispatcher",
        lambda c: c.update(batteries=[]) or c["inverters"][0].pop("battery"),
        "batteries",
        "[]",
        id="dispatcher-needs-batteries",
    ),
    pytest.param(
        "services.dispatcher",
        lambda c: c["dispatcher"].update(grid_meter="nowhere"),
        "dispatcher.grid_meter",
        "'nowhere'",
        id="dispatcher-unknown-grid-meter",
    ),
    pytest.param(
        "services.dispatcher",
        lambda c: c.update(tariff={"import": {"kind": "csv", "path": "/nonexistent/agile.csv"}}),
        "tariff.import.path",
        "'/nonexistent/agile.csv'",
        id="dispatcher-missing-tariff-csv",
    ),
    pytest.param(
        "services.recorder",
        lambda c: c["recorder"].update(spool_dir="/proc/ongrid-spool"),
        "recorder.spool_dir",
        "'/proc/ongrid-spool'",
        id="recorder-spool-not-creatable",
    ),
]


@pytest.mark.parametrize(("module", "break_it", "key", "value"), SERVICE_PROBLEMS)
def test_a_problem_a_service_finds_at_start_is_one_line_and_status_2(
    tmp_path: Path,
    module: str,
    break_it,
    key: str,
    value: str,  # type: ignore[no-untyped-def]
) -> None:
    data = base(tmp_path)
    break_it(data)
    config = tmp_path / "ongrid.yaml"
    config.write_text(yaml.safe_dump(data))
    assert_one_clear_message(run_service(module, config), config, f": {key}: ", f"(got {value})")


SERVICES = [
    "services.inverter_bridge",
    "services.meter_bridge",
    "services.bms_bridge",
    "services.dispatcher",
    "services.recorder",
    "services.simulator",
]


@pytest.mark.parametrize("module", SERVICES)
def test_a_validation_error_is_one_line_naming_file_key_and_value(tmp_path: Path, module: str) -> None:
    data = base(tmp_path)
    data["batteries"][0]["usable_kwh"] = -3  # type: ignore[index]
    config = tmp_path / "ongrid.yaml"
    config.write_text(yaml.safe_dump(data))
    assert_one_clear_message(run_service(module, config), config, "batteries.0.usable_kwh", "-3")


@pytest.mark.parametrize("module", SERVICES)
def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path: Path, module: str) -> None:
    config = tmp_path / "ongrid.yaml"
    config.write_text("site: home\nmqtt: [1, 2\n  host: x\n")
    line = assert_one_clear_message(run_service(module, config), config, "not valid YAML", "line 3, column 7")
    assert "<unicode string>" not in line


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process (this test) is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield holder.getsockname()[1]


@pytest.mark.parametrize("device", ["inv1", "inv1-v5", "pv-meter", "control"])
def test_a_port_the_simulator_cannot_bind_is_one_line_naming_it(tmp_path: Path, busy_port: int, device: str) -> None:
    data = yaml.safe_load(SCENARIO.read_text())
    sim = data["simulator"]
    sim["run_dir"] = str(tmp_path / "run")
    sim["devices"] = [d for d in sim["devices"] if d["id"] in ("inv1", "inv1-v5", "pv-meter")]
    for d in sim["devices"]:
        d["listen"]["port"] = busy_port if d["id"] == device else free_port()
    sim["control"]["port"] = busy_port if device == "control" else 0
    config = tmp_path / "scenario.yaml"
    config.write_text(yaml.safe_dump(data))
    index = [d["id"] for d in sim["devices"]].index(device) if device != "control" else None
    key = "simulator.control.port" if index is None else f"simulator.devices.{index}.listen.port"
    done = run_service("services.simulator", config, "--no-mqtt")
    line = assert_one_clear_message(done, config, key, f"127.0.0.1:{busy_port}", "in use")
    assert "Could not start listen" not in done.stderr + done.stdout, line
