"""The ``ongrid`` command as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from services.cli import COMMANDS
from shared import topics
from shared.bus import Bus
from shared.config import MqttConfig
from shared.examples import EXAMPLES
from shared.messages import Availability, AvailabilityState, BatteryState, InverterState, MeterState, utc_now
from tests.support import Broker

ONGRID = [sys.executable, "-m", "services"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ONGRID, *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_service() -> None:
    result = run("--help")
    assert result.returncode == 0
    for name in ("inverter-bridge", "bms-bridge", "meter-bridge", "dispatcher", "recorder", "simulator", "status"):
        assert name in result.stdout


def test_every_command_module_exists_and_has_main() -> None:
    import importlib

    for name, (module, _) in COMMANDS.items():
        target = importlib.import_module(module)
        assert callable(getattr(target, "main", None)), f"{module} has no main() for 'ongrid {name}'"


def test_config_error_names_the_key_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mqtt:\n  hots: broker\n")
    result = run("status", "--config", str(bad))
    assert result.returncode == 2
    assert "mqtt.hots: unknown key" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("backtest", "--no-such-option-whose-name-is-long-enough-to-wrap"),
        ("status", "--config"),
        ("dispatcher", "--log-level"),
        ("simulator", "--no-such-option-whose-name-is-long-enough-to-wrap"),
    ],
)
def test_usage_errors_stay_on_one_line_in_a_narrow_terminal(argv: tuple[str, ...]) -> None:
    """A 40-column pane: the error is one plain line a person can copy or grep, not a box whose
    border cuts the option's name in two (Typer's rich panels wrap at the terminal width)."""
    env = {**os.environ, "COLUMNS": "40", "TERM": "xterm-256color", "FORCE_COLOR": "1"}
    result = subprocess.run([*ONGRID, *argv], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    assert argv[-1] in errors[0]
    assert not any(ch in result.stderr for ch in "╭╰│─"), result.stderr


def test_status_shows_retained_fleet_state(mosquitto: Broker, tmp_path: Path) -> None:
    site = "cli" + uuid.uuid4().hex[:8]

    async def publish() -> None:
        async with Bus(MqttConfig(host=mosquitto.host, port=mosquitto.port), site=site, service="bridge") as bus:
            await bus.wait_connected(5)
            await bus.publish(topics.inverter_state(site, "inverter1"), EXAMPLES[InverterState])
            await bus.publish(topics.battery_state(site, "battery1"), EXAMPLES[BatteryState])
            await bus.publish(topics.meter_state(site, "grid"), EXAMPLES[MeterState])
            await bus.publish(
                topics.availability(site, topics.Kind.INVERTER, "inverter1"),
                Availability(ts=utc_now(), state=AvailabilityState.ONLINE),
            )

    asyncio.run(publish())
    cfg = tmp_path / "ongrid.yaml"
    cfg.write_text(f"site: {site}\nmqtt: {{host: {mosquitto.host}, port: {mosquitto.port}}}\n")
    result = run("status", "--config", str(cfg), "--wait", "1")
    assert result.returncode == 0, result.stderr
    for text in ("inverter1", "battery1", "grid", "bridge", "1,640", "offline"):
        assert text in result.stdout, text
    as_json = run("status", "--config", str(cfg), "--wait", "1", "--json")
    data = json.loads(as_json.stdout)
    assert data[topics.inverter_state(site, "inverter1")]["pv_power_w"] == 1640.0


def test_status_with_no_broker_fails_clearly(tmp_path: Path) -> None:
    from tests.support import free_port

    cfg = tmp_path / "ongrid.yaml"
    cfg.write_text(f"mqtt: {{host: 127.0.0.1, port: {free_port()}}}\n")
    result = run("status", "--config", str(cfg), "--wait", "0.5")
    assert result.returncode == 1
    assert "no answer from the broker" in result.stderr
