"""The bms-bridge as a process, reading the simulator's BMS server over a socat pty pair,
publishing through a real Mosquitto. Values are checked against the battery model's truth."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.simulator.devices.pylontech import PylontechFaults, SerialEndpoint, serve
from services.simulator.physics.battery import Battery, BatteryParams, PackView, WeakModule
from shared import topics
from shared.topics import Kind
from tests.support import SOCAT, Broker, Child, pty_pair
from tests.support.bridge_rig import Inbox, listening

pytestmark = pytest.mark.skipif(SOCAT is None, reason="socat is not installed")
BAUD = 115200
MODULES = 3


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked ptys, as a USB-RS485 adapter and the battery would be."""
    with pty_pair(tmp_path / "ttyBMS", tmp_path / "ttyBridge") as ends:
        yield ends


def charging_battery() -> Battery:
    battery = Battery(BatteryParams(modules=MODULES, weak=WeakModule(index=1), initial_soc_pct=62.0))
    battery.apply(-1800.0, 60.0)  # charging: current and power must come out negative
    return battery


@contextlib.asynccontextmanager
async def bridge_against_sim(
    tmp_path: Path, broker: Broker, ptys: tuple[str, str], battery: Battery, faults: PylontechFaults
) -> AsyncIterator[tuple[str, Inbox, Child]]:
    bms_end, bridge_end = ptys
    site = "t" + uuid.uuid4().hex[:10]
    config = tmp_path / "ongrid.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "site": site,
                "mqtt": {"host": broker.host, "port": broker.port},
                "batteries": [
                    {
                        "id": "stack",
                        "transport": {
                            "kind": "serial",
                            "device": bridge_end,
                            "baudrate": BAUD,
                            "timeout_s": 0.5,
                            "retries": 0,
                        },
                        "modules": MODULES,
                        "usable_kwh": 7.0,
                        "poll_s": 0.5,
                    }
                ],
            }
        )
    )
    server = asyncio.create_task(serve(battery, SerialEndpoint(bms_end), baudrate=BAUD, faults=faults))
    async with listening(broker, site) as inbox:
        bridge = Child("services.bms_bridge", "--config", str(config), log=tmp_path / "bridge.log")
        bridge.start()
        try:
            yield site, inbox, bridge
        finally:
            bridge.stop()
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server


def assert_matches_truth(state: dict[str, Any], truth: PackView) -> None:
    """Every field equals the model's value within the protocol's resolution, with the right sign."""
    approx = pytest.approx
    assert len(state["modules"]) == len(truth.modules)
    for got, want in zip(state["modules"], truth.modules, strict=True):
        assert got["voltage_v"] == approx(want.voltage_v, abs=0.0011)  # 1 mV
        assert got["current_a"] == approx(want.current_a, abs=0.051)  # 0.1 A, discharge +
        assert got["remaining_ah"] == approx(want.remaining_ah, abs=0.0011)  # 1 mAh
        assert got["full_ah"] == approx(want.full_ah, abs=0.0011)
        assert got["soc_pct"] == approx(want.soc_pct, abs=0.02)
        assert got["cycles"] == want.cycles
        assert got["temps_c"][0] == approx(want.bms_temp_c, abs=0.051)  # 0.1 K
        assert got["temps_c"][1:] == approx(list(want.cell_temps_c), abs=0.051)
        cells = [c["voltage_v"] for c in got["cells"]]
        assert cells == approx(list(want.cell_voltages_v), abs=0.00051)
        assert got["cell_spread_mv"] == approx(
            (max(want.cell_voltages_v) - min(want.cell_voltages_v)) * 1000, abs=1.01
        )
        assert got["alarms"] == []
    assert state["current_a"] == approx(truth.current_a, abs=0.051 * len(truth.modules))
    assert state["current_a"] < 0 and state["power_w"] < 0  # charging is negative
    assert state["power_w"] == approx(truth.voltage_v * truth.current_a, rel=0.01)
    assert state["voltage_v"] == approx(truth.voltage_v, abs=0.0011)
    assert state["soc_pct"] == approx(truth.soc_pct, abs=0.02)
    limits = state["limits"]
    want_charge = sum(m.charge_current_limit_a for m in truth.modules)
    want_discharge = sum(m.discharge_current_limit_a for m in truth.modules)
    assert limits["charge_current_a"] == approx(want_charge, abs=0.051 * len(truth.modules))
    assert limits["discharge_current_a"] == approx(want_discharge, abs=0.051 * len(truth.modules))
    assert limits["charge_voltage_v"] == approx(truth.modules[0].charge_voltage_limit_v, abs=0.0011)
    assert limits["discharge_voltage_v"] == approx(truth.modules[0].discharge_voltage_limit_v, abs=0.0011)
    assert limits["charge_allowed"] is True and limits["discharge_allowed"] is True
    all_cells = [v for m in truth.modules for v in m.cell_voltages_v]
    assert state["cell_min_v"] == approx(min(all_cells), abs=0.00051)
    assert state["cell_max_v"] == approx(max(all_cells), abs=0.00051)


async def test_bridge_publishes_truth_then_goes_offline_and_recovers(
    tmp_path: Path, mosquitto: Broker, ptys: tuple[str, str]
) -> None:
    battery = charging_battery()
    faults = PylontechFaults()
    async with bridge_against_sim(tmp_path, mosquitto, ptys, battery, faults) as (site, inbox, bridge):
        state_topic = topics.battery_state(site, "stack")
        avail_topic = topics.availability(site, Kind.BMS, "stack")
        event_topic = topics.event(site, Kind.BMS, "stack")
        try:
            state = await inbox.wait_for(state_topic)
            assert_matches_truth(state, battery.snapshot())
            await inbox.wait_for(avail_topic, lambda m: m["state"] == "online")
            identity = await inbox.wait_for(event_topic, lambda m: m["code"] == "bms_identity")
            assert identity["details"]["serials"] == [m.serial for m in battery.snapshot().modules]
            assert identity["details"]["manufacturer"] == "PYLON"

            faults.silent = True
            offline = await inbox.wait_for(avail_topic, lambda m: m["state"] == "offline")
            assert "no answer" in offline["reason"]
            states_while_silent = len(inbox.all(state_topic))
            await asyncio.sleep(1.5)
            assert len(inbox.all(state_topic)) == states_while_silent, "published a value it could not read"

            faults.silent = False
            await inbox.wait_for(avail_topic, lambda m: m["state"] == "online")
            assert len(inbox.all(state_topic)) >= states_while_silent
            fresh = await inbox.wait_for(state_topic, lambda m: m["ts"] > offline["ts"])
            assert_matches_truth(fresh, battery.snapshot())
        finally:
            bridge.stop()
        log = bridge.output()
        # One warning when the episode starts and one line when it ends, not one per poll. Under a
        # loaded machine the pty pair can miss the very first poll before the silence (an episode
        # of its own, also logged once each way), so the silence's episode is the last one.
        failing, recovered = log.count("BMS stack failing"), log.count("BMS stack recovered")
        assert failing >= 1 and recovered == failing, log
        silence = log[log.rindex("BMS stack failing"):]
        assert silence.count("BMS stack failing") == 1 and silence.count("BMS stack recovered") == 1, log
        assert silence.index("no answer") < silence.index("BMS stack recovered"), log


async def test_bridge_survives_noise_and_rejects_impossible_values(
    tmp_path: Path, mosquitto: Broker, ptys: tuple[str, str]
) -> None:
    battery = charging_battery()
    # Noise before every answer, holding frame markers of its own.
    faults = PylontechFaults(noise=b"\x00\xff~12\r\x7f~\x15\r~200\x00")
    async with bridge_against_sim(tmp_path, mosquitto, ptys, battery, faults) as (site, inbox, bridge):
        state_topic = topics.battery_state(site, "stack")
        avail_topic = topics.availability(site, Kind.BMS, "stack")
        first = await inbox.wait_for(state_topic)
        assert_matches_truth(first, battery.snapshot())
        await inbox.wait_for(state_topic, lambda m: m["ts"] > first["ts"])

        faults.noise = b""
        faults.out_of_range = True
        # Issue 15 item 2: cells at 65 V and -273 degC drop those fields, not the stack: the rest
        # is published, flagged, and an event names field and value.
        event_topic = topics.event(site, Kind.BMS, "stack")
        event = await inbox.wait_for(
            event_topic, lambda m: m["code"] == "implausible_value" and m["details"]["field"] == "cell1_voltage_v"
        )
        assert event["details"]["value"] == 65.0 and "cell1_voltage_v=65 outside" in event["message"]
        flagged = await inbox.wait_for(state_topic, lambda m: m["quality_flags"])
        assert "module0.cell1_voltage_v" in flagged["quality_flags"]
        assert "module2.temp1_c" in flagged["quality_flags"]
        assert flagged["cell_max_v"] is None and flagged["temp_min_c"] is None
        assert all(c["voltage_v"] is None for m in flagged["modules"] for c in m["cells"])
        assert flagged["soc_pct"] == pytest.approx(battery.snapshot().soc_pct, abs=0.02)
        assert flagged["current_a"] < 0
        assert all(m["cell_max_v"] is None or m["cell_max_v"] < 4.5 for m in inbox.all(state_topic))
        faults.out_of_range = False
        clean = await inbox.wait_for(state_topic, lambda m: m["ts"] > flagged["ts"] and not m["quality_flags"])
        assert_matches_truth(clean, battery.snapshot())
        await inbox.wait_for(event_topic, lambda m: m["code"] == "implausible_value_cleared")
        assert not [m for m in inbox.all(avail_topic) if m["state"] == "offline"]
        assert bridge.running()


async def test_a_negative_discharge_limit_is_read_as_its_magnitude_end_to_end(
    tmp_path: Path, mosquitto: Broker, ptys: tuple[str, str]
) -> None:
    # Issue 15 item 2: Pylontech firmware may send the discharge current limit negative
    # (python-pylontech README, github.com/Frankkkkk/python-pylontech: DischargeCurrentLimit = -10.0).
    # Before, one such 0x92 field made the bridge publish nothing, ever.
    battery = charging_battery()
    faults = PylontechFaults(negative_discharge_limit=True)
    async with bridge_against_sim(tmp_path, mosquitto, ptys, battery, faults) as (site, inbox, bridge):
        state = await inbox.wait_for(topics.battery_state(site, "stack"))
        assert_matches_truth(state, battery.snapshot())
        assert state["quality_flags"] == []
        assert state["limits"]["discharge_current_a"] > 0
        identity = await inbox.wait_for(
            topics.event(site, Kind.BMS, "stack"), lambda m: m["code"] == "bms_identity"
        )
        assert identity["details"]["module_discharge_current_limit_a"] == 50.0
        await inbox.wait_for(topics.availability(site, Kind.BMS, "stack"), lambda m: m["state"] == "online")
        assert bridge.running()
