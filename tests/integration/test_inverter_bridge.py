"""The inverter-bridge as a process against the simulator (Modbus TCP, RTU over a socat pty,
Solarman V5), through a real Mosquitto: decoded values against ground truth, a command round trip,
BMS clamping, replays, the lease watchdog, the write budget across a restart, and bad devices."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared import topics
from shared.messages import BatteryLimits, BatteryState, CommandMode, InverterCommand
from shared.topics import Kind
from tests.support import SOCAT, Broker, Child
from tests.support.bridge_rig import (
    Inbox,
    Simulator,
    listening,
    reading_at_truth,
    scenario,
    start_service,
    transports,
    write_config,
)

pytestmark = pytest.mark.skipif(SOCAT is None, reason="socat is not installed")
DEVICE = "inv1"


@pytest.fixture(scope="module")
def rig(
    tmp_path_factory: pytest.TempPathFactory, mosquitto: Broker
) -> Iterator[tuple[Simulator, dict[str, Any], Path]]:
    tmp = tmp_path_factory.mktemp("inverter-rig")
    # Late afternoon: a slow machine stretches this module over many simulated hours, and a midday
    # start filled the battery from PV until its room capped a commanded 500 W charge at 450 W.
    # From 16:00 the surplus is small and the evening load takes it back, so SoC stays mid-band.
    data = scenario(
        tmp, mosquitto, speed=20, step_s=60, passive_timeout_s=600, start="2026-06-01T16:00:00+01:00"
    )
    sim = Simulator(write_config(data, tmp / "scenario.yaml"), tmp / "simulator.log")
    try:
        yield sim, data, tmp
    finally:
        sim.stop()


class Bridge:
    def __init__(self, data: dict[str, Any], tmp: Path, name: str, **inverter: Any) -> None:
        self.config = dict(data)
        self.config["inverters"] = [{"id": DEVICE, "model": "sofar_me3000sp", **inverter}]
        self.path = write_config(self.config, tmp / f"{name}.yaml")
        self.log = tmp / f"{name}.log"
        self.process: Child | None = None

    def start(self) -> Bridge:
        self.process = start_service("services.inverter_bridge", self.path, self.log)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
async def bridge_factory(rig: tuple[Simulator, dict[str, Any], Path], tmp_path: Path) -> AsyncIterator[Any]:
    sim, shared_data, _ = rig
    # A site of this test's own: retained messages of earlier tests' bridges cannot answer for it.
    data = {**shared_data, "site": "t" + uuid.uuid4().hex[:10]}
    started: list[Bridge] = []

    def make(name: str, transport: str = "modbus_tcp", **inverter: Any) -> Bridge:
        settings = {"poll_s": 0.5, "heartbeat_s": 1.0, "verify_s": 10.0, "state_dir": str(tmp_path / "state")}
        settings.update(inverter)
        bridge = Bridge(
            data, tmp_path, name, transport=transports(data, Path(data["simulator"]["run_dir"]))[transport], **settings
        )
        started.append(bridge)
        return bridge.start()

    make.site = data["site"]  # type: ignore[attr-defined]
    yield make
    for bridge in started:
        bridge.stop()
    # Leave the shared simulated inverter as the next test expects it: self-use, no faults.
    for device in ("inv-tcp", "inv-rtu", "inv-v5"):
        await sim.fault(device, None)


def t(site: str, stream: str) -> str:
    return topics.topic(site, Kind.INVERTER, DEVICE, stream)


async def send(inbox: Inbox, site: str, command: InverterCommand) -> dict[str, Any]:
    mark = inbox.mark()
    await inbox.publish(topics.inverter_command(site, DEVICE), command.to_json())
    return await inbox.wait_for(t(site, "ack"), lambda m: m["command_id"] == command.id, after=mark)


def command(mode: CommandMode, power_w: float = 0.0, **kw: Any) -> InverterCommand:
    return InverterCommand(ts=datetime.now(UTC), mode=mode, power_w=power_w, **kw)


# --------------------------------------------------------------------------------------------------


def assert_matches_truth(state: dict[str, Any], truth: dict[str, Any]) -> None:
    """Every field the simulator knows the truth of, within the register's resolution."""
    power = 5.0 + 0.06  # 0.01 kW registers, truth rounded to 0.1 W
    assert state["battery_power_w"] == pytest.approx(truth["battery_w"], abs=power)
    assert state["grid_power_w"] == pytest.approx(truth["grid_w"], abs=power)
    assert state["pv_power_w"] == pytest.approx(truth["pv_w"], abs=power)
    assert state["load_power_w"] == pytest.approx(truth["load_w"], abs=power)
    assert state["inverter_power_w"] == pytest.approx(truth["battery_w"], abs=power)
    assert state["battery_soc_pct"] == pytest.approx(truth["soc_pct"], abs=0.5 + 1e-3)  # 1 % register
    assert state["running_state"] == truth["inverter"]["running_state"]
    totals = truth["totals_wh"]  # the run starts at noon: today's counters are the run's totals
    for field, key in (("pv", "pv_wh"), ("import", "import_wh"), ("export", "export_wh"), ("load", "load_wh")):
        assert state[f"{field}_energy_today_wh"] == pytest.approx(totals[key], abs=5.0 + 0.02)  # 0.01 kWh
        assert state[f"{field}_energy_total_wh"] == pytest.approx(totals[key], abs=500.0 + 0.02)  # 1 kWh
    assert state["eps_power_w"] == 0.0
    assert state["faults"] == []
    # Signs: the battery's current has its power's sign (discharge +) whichever way it flows.
    if abs(state["battery_power_w"]) > 50:
        assert (state["battery_current_a"] > 0) == (state["battery_power_w"] > 0)
    assert 49.5 < state["grid_frequency_hz"] < 50.5 and 200 < state["grid_voltage_v"] < 260


@pytest.mark.parametrize("transport", ["modbus_tcp", "modbus_rtu", "solarman_v5"])
async def test_state_equals_ground_truth(
    transport: str, rig: tuple[Simulator, dict[str, Any], Path], bridge_factory: Any, mosquitto: Broker
) -> None:
    sim = rig[0]
    site = bridge_factory.site
    async with listening(mosquitto, site) as inbox:
        bridge = bridge_factory(f"truth-{transport}", transport)
        online = await inbox.wait_for(t(site, "availability"), lambda m: m["state"] == "online")
        assert online["state"] == "online", bridge.output()
        state, truth = await reading_at_truth(sim, inbox, t(site, "state"))
        assert state["device"] == DEVICE and state["model"] == "sofar_me3000sp"
        assert_matches_truth(state, truth)
        identity = await inbox.wait_for(t(site, "event"), lambda m: m["code"] == "inverter_identity")
        assert identity["details"]["serial_number"] == "SE1ES000000001"
        counters = await inbox.wait_for(t(site, "counters"))
        assert counters["budget_per_day"] == 1000


async def test_commands_round_trip_with_signs_clamps_and_replays(
    rig: tuple[Simulator, dict[str, Any], Path], bridge_factory: Any, mosquitto: Broker
) -> None:
    sim = rig[0]
    site = bridge_factory.site
    async with listening(mosquitto, site) as inbox:
        bridge_factory("commands", battery="bat1")
        await inbox.wait_for(t(site, "availability"), lambda m: m["state"] == "online")
        # The BMS allows 10 A at 50 V: 500 W of charge, whatever is asked.
        bms = BatteryState(
            ts=datetime.now(UTC), device="bat1", voltage_v=50.0, current_a=0.0, power_w=0.0, soc_pct=50.0,
            temp_min_c=20.0, temp_max_c=22.0,
            limits=BatteryLimits(charge_current_a=10.0, discharge_current_a=60.0),
        )  # fmt: skip
        await inbox.publish(topics.battery_state(site, "bat1"), bms.to_json())
        await asyncio.sleep(0.3)

        charge = command(CommandMode.CHARGE, 1000, lease_s=60)
        ack = await send(inbox, site, charge)
        assert ack["status"] == "accepted", ack
        assert ack["clamped"] is True and "BMS charge limit 500 W" in ack["reason"]
        assert ack["applied_mode"] == "charge" and ack["applied_power_w"] == -500.0
        verified = await inbox.wait_for(
            t(site, "ack"), lambda m: m["command_id"] == charge.id and m["verified"] is not None
        )
        assert verified["verified"] is True
        truth = await sim.truth()
        assert truth["inverter"]["control"] == "passive" and truth["inverter"]["passive_mode"] == "charge"
        assert truth["inverter"]["passive_value_w"] == 500.0
        state, truth = await reading_at_truth(sim, inbox, t(site, "state"))
        assert state["battery_power_w"] == pytest.approx(-500.0, abs=10.06) and truth["battery_w"] < 0
        assert state["control"] == "passive"

        # Discharge: the other sign, within the BMS's 60 A x 50 V and the inverter's 3 kW.
        discharge = command(CommandMode.DISCHARGE, 1500, lease_s=60)
        ack = await send(inbox, site, discharge)
        assert (ack["status"], ack["applied_power_w"], ack["clamped"]) == ("accepted", 1500.0, False)
        await inbox.wait_for(t(site, "ack"), lambda m: m["command_id"] == discharge.id and m["verified"] is True)
        state, truth = await reading_at_truth(sim, inbox, t(site, "state"))
        assert state["battery_power_w"] == pytest.approx(truth["battery_w"], abs=5.06) and truth["battery_w"] > 1000

        # A replay of an executed id is answered again and never executed twice.
        executed = (await sim.truth())["inverter"]["commands_accepted"]
        again = await send(inbox, site, discharge)
        assert again["status"] == "accepted" and "already handled" in again["reason"]
        # The same setpoint under a new id renews the lease without a write.
        renew = await send(inbox, site, command(CommandMode.DISCHARGE, 1510, lease_s=60))
        assert renew["status"] == "accepted" and "nothing written" in renew["reason"]
        assert (await sim.truth())["inverter"]["commands_accepted"] == executed

        # Expired commands are refused.
        stale = command(CommandMode.CHARGE, 800, expires_at=datetime.now(UTC) - timedelta(seconds=5))
        refused = await send(inbox, site, stale)
        assert refused["status"] == "rejected" and "expired" in refused["reason"]

        # Garbage on the command topic is answered with an error, not acted on.
        mark = inbox.mark()
        await inbox.publish(topics.inverter_command(site, DEVICE), json.dumps({"id": "bad1", "mode": "warp"}).encode())
        bad = await inbox.wait_for(t(site, "ack"), lambda m: m["command_id"] == "bad1", after=mark)
        assert bad["status"] == "error"

        # A command without an id is answered without one and not executed: nobody could match it.
        received = (await sim.truth())["inverter"]["writes_received"]
        mark = inbox.mark()
        anonymous = json.dumps({"ts": datetime.now(UTC).isoformat(), "mode": "charge", "power_w": 700}).encode()
        await inbox.publish(topics.inverter_command(site, DEVICE), anonymous)
        answer = await inbox.wait_for(t(site, "ack"), lambda m: m["command_id"] is None, after=mark)
        assert answer["status"] == "error" and "not executed" in answer["reason"]
        assert (await sim.truth())["inverter"]["writes_received"] == received

        back = await send(inbox, site, command(CommandMode.SELF_USE))
        assert back["status"] == "accepted" and back["applied_mode"] == "self_use"
        truth = await sim.truth()
        assert truth["inverter"]["passive_mode"] == "auto" and truth["inverter"]["passive_value_w"] == 0.0


async def test_lease_expiry_hands_back_to_self_use(
    rig: tuple[Simulator, dict[str, Any], Path], bridge_factory: Any, mosquitto: Broker
) -> None:
    sim = rig[0]
    site = bridge_factory.site
    async with listening(mosquitto, site) as inbox:
        bridge_factory("lease", transport="modbus_tcp")
        await inbox.wait_for(t(site, "availability"), lambda m: m["state"] == "online")
        ack = await send(inbox, site, command(CommandMode.DISCHARGE, 800, lease_s=2))
        assert ack["status"] == "accepted"
        assert (await sim.truth())["inverter"]["passive_mode"] == "discharge"
        event = await inbox.wait_for(t(site, "event"), lambda m: m["code"] == "watchdog_expired")
        assert event["level"] == "warning" and event["details"]["wrote"] is True
        truth = await sim.truth()
        assert truth["inverter"]["passive_mode"] == "auto" and truth["inverter"]["passive_value_w"] == 0.0
        state = await inbox.wait_for(t(site, "state"), lambda m: m["control"] == "self_use")
        assert state["control"] == "self_use"


async def test_write_budget_refuses_and_survives_a_restart(
    rig: tuple[Simulator, dict[str, Any], Path], bridge_factory: Any, mosquitto: Broker, tmp_path: Path
) -> None:
    site = bridge_factory.site
    async with listening(mosquitto, site) as inbox:
        bridge = bridge_factory("budget", write_budget_per_day=2)
        await inbox.wait_for(t(site, "availability"), lambda m: m["state"] == "online")
        assert (await send(inbox, site, command(CommandMode.CHARGE, 500)))["status"] == "accepted"
        skipped = await send(inbox, site, command(CommandMode.CHARGE, 510))  # quantises to 500: no write
        assert skipped["status"] == "accepted" and "nothing written" in skipped["reason"]
        assert (await send(inbox, site, command(CommandMode.DISCHARGE, 500)))["status"] == "accepted"
        refused = await send(inbox, site, command(CommandMode.CHARGE, 1000))
        assert refused["status"] == "rejected" and "write budget exhausted: 2/2" in refused["reason"]
        counters = await inbox.wait_for(t(site, "counters"), lambda m: m["refused_budget"] == 1)
        assert counters["writes"] == {"passive_charge_w": 1, "passive_discharge_w": 1}
        assert (counters["skipped_noop"], counters["refused_budget"]) == (1, 1)

        bridge.stop()
        mark = inbox.mark()
        bridge_factory("budget-again", write_budget_per_day=2)
        await inbox.wait_for(t(site, "counters"), after=mark)
        again = await send(inbox, site, command(CommandMode.STANDBY))
        assert again["status"] == "rejected" and "budget exhausted" in again["reason"]
        stored = json.loads(next((tmp_path / "state").glob("inverter-inv1-writes.json")).read_text())
        assert stored["writes"] == {"passive_charge_w": 1, "passive_discharge_w": 1}
        assert stored["refused_budget"] == 2


@pytest.mark.parametrize(
    ("transport", "endpoint", "fault"),
    [
        ("modbus_tcp", "inv-tcp", {"silent": True}),
        ("modbus_rtu", "inv-rtu", {"crc": True}),  # Modbus TCP has no CRC: RTU is where it bites
        ("modbus_tcp", "inv-tcp", {"exception": 4}),
        ("solarman_v5", "inv-v5", {"out_of_range": True}),
    ],
    ids=["silent-tcp", "crc-rtu", "exception-tcp", "out_of_range-v5"],
)
async def test_bad_device_goes_offline_publishes_nothing_and_recovers(
    transport: str,
    endpoint: str,
    fault: dict[str, Any],
    rig: tuple[Simulator, dict[str, Any], Path],
    bridge_factory: Any,
    mosquitto: Broker,
) -> None:
    sim = rig[0]
    site = bridge_factory.site
    async with listening(mosquitto, site) as inbox:
        bridge = bridge_factory(f"fault-{endpoint}", transport=transport, poll_s=0.5)
        await inbox.wait_for(t(site, "availability"), lambda m: m["state"] == "online")
        await inbox.wait_for(t(site, "state"))
        await sim.fault(endpoint, fault)
        faulted_at = datetime.now(UTC)
        mark = inbox.mark()
        offline = await inbox.wait_for(t(site, "availability"), lambda m: m["state"] == "offline", after=mark)
        assert "2 polls failed" in offline["reason"]
        await asyncio.sleep(1.5)  # a few more failing polls
        during = [m for m in inbox.all(t(site, "state"), after=mark) if m["ts"] > faulted_at.isoformat()[:23]]
        # At most a poll already in flight when the fault was switched on; never one after offline.
        assert all(m["ts"] < offline["ts"] for m in during)
        await sim.fault(endpoint, None)
        mark = inbox.mark()
        await inbox.wait_for(t(site, "availability"), lambda m: m["state"] == "online", after=mark)
        await inbox.wait_for(t(site, "state"), after=mark)
        log = bridge.output()
        assert log.count("failing:") == 1 and log.count("recovered after") == 1, log


async def test_solarman_logger_dropping_idle_connections_is_not_a_failure(
    rig: tuple[Simulator, dict[str, Any], Path], bridge_factory: Any, mosquitto: Broker
) -> None:
    sim = rig[0]
    site = bridge_factory.site
    await sim.fault("inv-v5", {"idle_drop_s": 0.4})
    async with listening(mosquitto, site) as inbox:
        bridge = bridge_factory("v5-idle", transport="solarman_v5", poll_s=1.0)
        await inbox.wait_for(t(site, "availability"), lambda m: m["state"] == "online")
        mark = inbox.mark()
        assert len(await inbox.wait_count(t(site, "state"), 3, after=mark)) >= 3  # each poll after an idle drop
        assert not [m for m in inbox.all(t(site, "availability"), after=mark) if m["state"] == "offline"]
        assert "failing" not in bridge.output()
