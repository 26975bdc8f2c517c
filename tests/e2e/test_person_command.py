"""End to end: a person's force_charge reaches the inverter at once, though auto has just turned to
discharging (issue 12 item 7).

The real services, each its own process, through a private Mosquitto: the simulator as the house
(Sofar over Modbus TCP, the SDM120 grid meter on an RTU pty, the Pylontech BMS on its pty), the
inverter, meter and BMS bridges, and the dispatcher. The seed house on a June evening (peak rate,
no PV): ``auto`` discharges to cover the house by setpoint (``inverter_self_use: false``). As soon
as the first discharge command has gone out, a person asks for ``force_charge`` on ``mode/set`` (as
Home Assistant's select and Node-RED do). Before the fix the dispatcher answered ``standby 0 W
(dwell)`` for up to ``dwell_s``: a reversal within 300 s of the last one. Now the simulated inverter
must receive a 0x42 *charge* write within two control cycles (two dispatcher decisions) of the
request.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.devtools.demo import SCENARIO, Fleet, relocate_scenario
from shared import topics
from shared.bus import Bus
from shared.config import MqttConfig
from shared.messages import DispatcherDecision, DispatcherModeName, InverterCommand, ModeRequest
from shared.modbus.sofar_pdu import CHARGE_REGISTER, DISCHARGE_REGISTER, PASSIVE_FUNCTION
from tests.support import MOSQUITTO, Broker, endpoint_map, free_port, read_endpoints

SPEED = 10.0
START = datetime(2026, 6, 21, 20, 30, tzinfo=UTC)  # 21:30 BST: peak rate, the sun has set
USED = ("inv1", "grid", "bat1")

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed")


def scenario(workdir: Path, broker: Broker) -> dict[str, Any]:
    data = relocate_scenario(yaml.safe_load(SCENARIO.read_text()), workdir, free_port, broker.port, SPEED)
    sim = data["simulator"]
    sim["devices"] = [d for d in sim["devices"] if d["id"] in USED]
    sim["battery"]["initial_soc_pct"] = 70  # plenty to cover the evening: auto discharges
    data["dispatcher"]["dwell_s"] = 300.0  # the default, stated: 30 s of wall time at this speed
    # Auto discharges by setpoint (as when the issue was seen), not by handing the inverter its own
    # self-use: the reversal a dwell would hold is then the dispatcher's own.
    data["dispatcher"]["inverter_self_use"] = False
    data["log_level"] = "INFO"
    return data


def passive_writes(control_url: str) -> list[dict[str, Any]]:
    """Every 0x42 request the simulated inverter received, in order."""
    with urllib.request.urlopen(control_url + "/writes", timeout=10) as response:
        writes = json.loads(response.read())["writes"]
    return [w for w in writes if w["function"] == PASSIVE_FUNCTION]


async def drive(mqtt: MqttConfig, site: str, fleet: Fleet, control_url: str) -> tuple[int, list[DispatcherDecision]]:
    decisions: list[DispatcherDecision] = []
    commands: list[InverterCommand] = []

    async def on_decision(_topic: str, message: DispatcherDecision) -> None:
        decisions.append(message)

    async def on_command(_topic: str, message: InverterCommand) -> None:
        commands.append(message)

    async def until(check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert not fleet.dead(), f"{fleet.dead()} exited early; logs in {fleet.workdir / 'logs'}"
            assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
            await asyncio.sleep(0.05)

    async with Bus(mqtt, site=site, service="person", announce=False) as bus:
        bus.subscribe(topics.dispatcher_decision(site), DispatcherDecision, on_decision)
        bus.subscribe(topics.inverter_command(site, "inv1"), InverterCommand, on_command)
        await bus.subscribed(15)
        await until(lambda: any(c.mode.value == "discharge" for c in commands), 120, "auto discharging")
        # auto has just turned to discharging: a reversal now is inside its dwell
        assert all(c.mode.value != "charge" for c in commands), commands
        await until(
            lambda: any(w["register"] == DISCHARGE_REGISTER for w in passive_writes(control_url)),
            30,
            "the discharge reaching the inverter",
        )
        seen = len(passive_writes(control_url))
        asked_at = len(decisions)
        await bus.publish(topics.mode_set(site), ModeRequest(mode=DispatcherModeName.FORCE_CHARGE))
        await until(
            lambda: any(w["register"] == CHARGE_REGISTER for w in passive_writes(control_url)[seen:])
            or len(decisions) > asked_at + 4,
            60,
            "a charge write or four control cycles",
        )
        # the decisions published until then (after the mode change) are the control cycles it took
        cycles = len(decisions) - asked_at
        charged = any(w["register"] == CHARGE_REGISTER for w in passive_writes(control_url)[seen:])
        if not charged:
            return -1, decisions[asked_at:]
        # The dispatcher publishes the decision beside the command, so the write can be seen at the
        # inverter before the decision reaches us (cycles 0, no force_charge decision yet): wait for
        # it and count the cycle it was made in.
        await until(
            lambda: any(d.mode == "force_charge" for d in decisions[asked_at:]),
            15,
            "the force_charge decision behind the charge write",
        )
        first = next(i for i, d in enumerate(decisions[asked_at:]) if d.mode == "force_charge")
        return max(cycles, first + 1), decisions[asked_at:]


def test_force_charge_reaches_the_inverter_within_two_control_cycles(tmp_path: Path, own_broker: Broker) -> None:
    data = scenario(tmp_path, own_broker)
    config = tmp_path / "ongrid.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    fleet = Fleet(tmp_path, config)
    try:
        clock = ("--speed", str(SPEED), "--start", START.isoformat())
        fleet.start("simulator", "services.simulator", *clock, "--mqtt")
        simulator = fleet.processes["simulator"]
        endpoints = endpoint_map(read_endpoints(simulator, timeout=60, log=fleet.log_path("simulator")))
        assert simulator.stdout is not None
        os.set_blocking(simulator.stdout.fileno(), False)  # never block on a full pipe
        for service in ("inverter_bridge", "meter_bridge", "bms_bridge", "dispatcher"):
            fleet.start(service, f"services.{service}")
        mqtt = MqttConfig(host=own_broker.host, port=own_broker.port)
        cycles, after = asyncio.run(drive(mqtt, data["site"], fleet, endpoints["control"]))
    finally:
        fleet.stop()
    log = fleet.log_path("dispatcher").read_text(errors="replace")
    context = f"\ndecisions after the request: {[(d.mode, d.reason, d.setpoints.battery_power_w) for d in after]}"
    context += f"\n--- dispatcher log tail ---\n{log[-3000:]}"
    assert cycles != -1, "no charge write reached the inverter within four control cycles" + context
    assert cycles <= 2, f"the charge reached the inverter after {cycles} control cycles" + context
    first = next(d for d in after if d.mode == "force_charge")
    assert first.reason == "force_charge" and first.setpoints.battery_power_w < 0, context
