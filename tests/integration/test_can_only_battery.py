"""Issue 15 item 3: a battery on CAN to the inverter only (no ``transport``) runs with the real
services: simulator (Modbus TCP inverter, no BMS endpoint), inverter-bridge and dispatcher, each its
own process, through a private Mosquitto, on the simulator's clock. No bms-bridge runs.

The dispatcher must plan and command from the inverter's SoC and the battery's *configured*
limits: the configured ``max_charge_w`` (below the inverter's and the simulated battery's 3 kW)
bounds every plan step and every command, and the inverter bridge accepts the commands without
expecting BMS limits that can never come.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.devtools.demo import SCENARIO, Fleet, relocate_scenario
from services.devtools.fleet_start import service_name, start_when_online
from shared import topics
from shared.bus import Bus
from shared.config import MqttConfig
from shared.messages import (
    AckStatus,
    BatteryState,
    CommandAck,
    DispatcherDecision,
    InverterCommand,
    InverterState,
    Plan,
)
from tests.support import MOSQUITTO, Broker, endpoint_map, free_port, read_endpoints

SPEED = 60.0
START = datetime(2026, 1, 15, 1, 0, tzinfo=UTC)  # in the Economy 7 window: the plan charges
CHARGE_CAP_W = 1200.0

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed")


def can_only_scenario(workdir: Path, broker: Broker) -> dict[str, Any]:
    data = relocate_scenario(yaml.safe_load(SCENARIO.read_text()), workdir, free_port, broker.port, SPEED)
    sim = data["simulator"]
    sim["devices"] = [d for d in sim["devices"] if d["id"] == "inv1"]  # no BMS on any wire
    sim["battery"]["initial_soc_pct"] = 30
    sim["control"]["truth_interval_s"] = 0.5
    battery = data["batteries"][0]
    del battery["transport"]
    battery["max_charge_w"] = CHARGE_CAP_W
    data["meters"] = []
    data["dispatcher"].pop("grid_meter", None)  # the inverter's own CT
    state = str(workdir / "state")
    data["inverters"][0].update(poll_s=1.0, state_dir=state)
    data["dispatcher"].update(state_dir=state, replan_minutes=60)
    data["tariff"]["export"] = {"kind": "flat", "price_per_kwh": 0.05}
    data["log_level"] = "INFO"
    return data


async def watch(mqtt: MqttConfig, site: str, fleet: Fleet, wall_s: float) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = {"plan": [], "decision": [], "command": [], "ack": [], "bms": [], "inverter": []}

    def into(name: str) -> Any:
        async def take(_topic: str, message: Any) -> None:
            seen[name].append(message)

        return take

    async with Bus(mqtt, site=site, service="can-only-observer", announce=False) as bus:
        bus.subscribe(topics.dispatcher_plan(site), Plan, into("plan"))
        bus.subscribe(topics.dispatcher_decision(site), DispatcherDecision, into("decision"))
        bus.subscribe(topics.inverter_command(site, "inv1"), InverterCommand, into("command"))
        bus.subscribe(topics.inverter_ack(site, "inv1"), CommandAck, into("ack"))
        bus.subscribe(topics.inverter_state(site, "inv1"), InverterState, into("inverter"))
        bus.subscribe(topics.battery_state(site, "bat1"), BatteryState, into("bms"))
        await bus.subscribed(10)
        deadline = time.monotonic() + wall_s
        while time.monotonic() < deadline:
            dead = fleet.dead()
            assert not dead, f"{dead} exited; logs in {fleet.workdir / 'logs'}"
            accepted = [a for a in seen["ack"] if a.status is AckStatus.ACCEPTED and a.applied_power_w]
            if seen["plan"] and len(accepted) >= 3:
                break
            await asyncio.sleep(0.5)
    return seen


def test_dispatcher_runs_a_battery_without_a_bms_link(tmp_path: Path, own_broker: Broker) -> None:
    data = can_only_scenario(tmp_path, own_broker)
    config = tmp_path / "ongrid.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    fleet = Fleet(tmp_path, config)
    try:
        clock = ("--speed", str(SPEED), "--start", START.isoformat(), "--hold")
        fleet.start("simulator", "services.simulator", *clock, "--mqtt")
        endpoints = read_endpoints(fleet.processes["simulator"], timeout=60, log=fleet.log_path("simulator"))
        services = ("inverter_bridge", "dispatcher")
        for service in services:
            fleet.start(service, f"services.{service}")
        mqtt = MqttConfig(host=own_broker.host, port=own_broker.port)
        # The cheap window's hours start once both services are online (the clock is held until then).
        control = endpoint_map(endpoints)["control"]
        start_when_online(mqtt, data["site"], map(service_name, services), control, dead=fleet.dead)
        seen = asyncio.run(watch(mqtt, data["site"], fleet, 240.0))
    finally:
        fleet.stop()
    logs = {name: fleet.log_path(name).read_text(errors="replace") for name in fleet.processes}
    context = (
        f"\n--- dispatcher log ---\n{logs['dispatcher'][-3000:]}\n--- inverter bridge ---\n"
        + logs["inverter_bridge"][-2000:]
    )

    assert seen["plan"], "no plan" + context
    assert seen["bms"] == [], "a BMS state appeared for a battery with no BMS link"
    # The SoC the plan starts from is the inverter's (the only one there is).
    plan = seen["plan"][0]
    inverter_socs = [s.battery_soc_pct for s in seen["inverter"]]
    assert min(inverter_socs) - 1 <= plan.soc_pct_start <= max(inverter_socs) + 1, context
    # The configured limit, not the inverter's 3 kW, bounds what is planned and asked.
    assert all(step.battery_power_w >= -CHARGE_CAP_W - 1e-6 for p in seen["plan"] for step in p.steps), context
    charges = [c for c in seen["command"] if c.mode.value == "charge"]
    assert charges, "no charge command in the cheap window" + context
    assert all(c.power_w <= CHARGE_CAP_W for c in seen["command"]), context
    accepted = [a for a in seen["ack"] if a.status is AckStatus.ACCEPTED and a.applied_power_w]
    assert len(accepted) >= 3, f"acks: {seen['ack']}" + context
    # The inverter bridge does not wait for, or warn about, BMS limits that can never come.
    assert not [a for a in seen["ack"] if a.reason and "BMS" in a.reason], seen["ack"]
    assert all(d.reason != "stale_inputs" for d in seen["decision"][len(seen["decision"]) // 2 :]), context
    # No BMS link: every decision says it stands on the inverter's SoC, and there is no BMS reading.
    with_inputs = [d for d in seen["decision"] if d.reason != "stale_inputs"]
    assert with_inputs and all(d.soc_source == "inverter" and d.soc_device == "inv1" for d in with_inputs), context
    assert all("soc_bms_pct" not in d.numbers and "soc_inverter_pct" in d.numbers for d in with_inputs), context
    for name in ("dispatcher", "inverter_bridge"):
        assert "Traceback" not in logs[name], logs[name][-3000:]
