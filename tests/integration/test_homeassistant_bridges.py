"""Home Assistant discovery from the bridges themselves: the simulator and the inverter, meter and BMS
bridges as processes through a real Mosquitto, with no dispatcher and no recorder running (a home
that only monitors). Each bridge announces its own devices (the BMS with its stack's cell spread
and each module's sensors); a meter removed from the config loses its entities when the meter
bridge restarts, and the other bridges' entities stay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared import homeassistant as ha
from tests.support import SOCAT, Broker, Child
from tests.support.bridge_rig import Simulator, scenario, start_service, transports, write_config
from tests.support.retained import retained

pytestmark = pytest.mark.skipif(SOCAT is None, reason="socat is not installed")


async def wait_configs(
    broker: Broker, site: str, done: Callable[[dict[str, dict[str, Any]]], bool], within_s: float = 60.0
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + within_s
    while True:
        seen = await retained(broker, f"homeassistant/+/ongrid_{site}/+/config")
        if done(seen) or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.5)


def by_kind(seen: dict[str, Any], prefix: str) -> set[str]:
    return {topic for topic in seen if topic.split("/")[-2].startswith(prefix)}


async def test_bridges_announce_their_own_devices_and_a_removed_meter_is_cleared(
    mosquitto: Broker, tmp_path: Path
) -> None:
    data = scenario(tmp_path, mosquitto)
    site = data["site"]
    via = transports(data, tmp_path)
    data["inverters"] = [
        {"id": "inv1", "model": "sofar_me3000sp", "transport": via["modbus_tcp"], "state_dir": str(tmp_path)}
    ]
    data["meters"] = [
        {"id": "grid", "model": "eastron_sdm120", "role": "grid", "transport": via["grid_meter"]},
        {"id": "pv", "model": "eastron_sdm630", "role": "pv", "transport": via["pv_meter"]},
    ]
    # No simulated BMS on this rig: the bms-bridge announces the stack whether or not it answers.
    data["batteries"][0]["transport"]["device"] = str(tmp_path / "no-bms")
    config = write_config(data, tmp_path / "ongrid.yaml")
    sim = Simulator(config, tmp_path / "simulator.log")
    children: list[Child] = []
    try:
        for service in ("inverter_bridge", "meter_bridge", "bms_bridge"):
            children.append(start_service(f"services.{service}", config, tmp_path / f"{service}.log"))
        modules = data["batteries"][0]["modules"]
        expected = {
            "inverter_inv1_": len(ha.INVERTER_SENSORS),
            "meter_grid_": len(ha.METER_SENSORS),
            "meter_pv_": len(ha.METER_SENSORS),
            "bms_bat1_": len(ha.BATTERY_SENSORS) + modules * len(ha.MODULE_SENSORS),
        }
        seen = await wait_configs(
            mosquitto, site, lambda s: all(len(by_kind(s, p)) == n for p, n in expected.items())
        )
        assert {p: len(by_kind(seen, p)) for p in expected} == expected, [c.output()[-2000:] for c in children]
        # Nothing of the dispatcher's or the recorder's: neither runs, and nobody speaks for them.
        assert not by_kind(seen, "dispatcher_") and not by_kind(seen, "stats_")
        spread = seen[f"homeassistant/sensor/ongrid_{site}/bms_bat1_module{modules}_cell_spread/config"]
        assert spread["state_topic"] == f"ongrid/{site}/bms/bat1/state"
        assert spread["availability"][0]["topic"] == f"ongrid/{site}/service/bms-bridge/availability"
        assert seen[f"homeassistant/sensor/ongrid_{site}/inverter_inv1_soc/config"]["availability"][0][
            "topic"
        ] == f"ongrid/{site}/service/inverter-bridge/availability"

        # The pv meter leaves the config: its entities go when the meter bridge restarts.
        children[1].stop()
        data["meters"] = data["meters"][:1]
        write_config(data, config)
        children[1] = start_service("services.meter_bridge", config, tmp_path / "meter_bridge-2.log")
        after = await wait_configs(mosquitto, site, lambda s: not by_kind(s, "meter_pv_"))
        assert not by_kind(after, "meter_pv_"), children[1].output()[-2000:]
        assert len(by_kind(after, "meter_grid_")) == len(ha.METER_SENSORS)
        assert by_kind(after, "inverter_inv1_") == by_kind(seen, "inverter_inv1_")
        assert by_kind(after, "bms_bat1_") == by_kind(seen, "bms_bat1_")
    finally:
        for child in children:
            child.stop()
        sim.stop()
