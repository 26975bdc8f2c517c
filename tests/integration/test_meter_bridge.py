"""The meter-bridge as a process: Eastron meters of the simulator over Modbus RTU (socat ptys)
against ground truth, two meters sharing one RS485 bus, and a meter that goes bad and recovers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.simulator.servers import MapSource, RegisterContext, start_server
from shared import topics
from shared.registers import load_map
from shared.topics import Kind
from tests.support import SOCAT, Broker, Child, pty_pair
from tests.support.bridge_rig import (
    Simulator,
    listening,
    reading_at_truth,
    scenario,
    start_service,
    transports,
    write_config,
)

pytestmark = pytest.mark.skipif(SOCAT is None, reason="socat is not installed")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, mosquitto: Broker) -> Iterator[tuple[Simulator, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("meter-rig")
    data = scenario(tmp, mosquitto, speed=20, step_s=60)
    sim = Simulator(write_config(data, tmp / "scenario.yaml"), tmp / "simulator.log")
    try:
        yield sim, data
    finally:
        sim.stop()


@pytest.fixture
def meter_bridge(rig: tuple[Simulator, dict[str, Any]], tmp_path: Path) -> Iterator[tuple[str, Child]]:
    _, shared_data = rig
    data = {**shared_data, "site": "t" + uuid.uuid4().hex[:10]}
    reach = transports(data, Path(data["simulator"]["run_dir"]))
    data["meters"] = [
        {"id": "grid", "model": "eastron_sdm120", "role": "grid", "transport": reach["grid_meter"], "poll_s": 0.5},
        {"id": "pv", "model": "eastron_sdm630", "role": "pv", "transport": reach["pv_meter"], "poll_s": 0.5},
    ]
    config = write_config(data, tmp_path / "m.yaml")
    process = start_service("services.meter_bridge", config, tmp_path / "meter-bridge.log")
    yield data["site"], process
    process.stop()


def meter(site: str, device: str, stream: str = "state") -> str:
    return topics.topic(site, Kind.METER, device, stream)


async def test_meters_equal_ground_truth(
    rig: tuple[Simulator, dict[str, Any]], meter_bridge: tuple[str, Child], mosquitto: Broker
) -> None:
    sim = rig[0]
    site, _ = meter_bridge
    async with listening(mosquitto, site) as inbox:
        for device in ("grid", "pv"):
            await inbox.wait_for(meter(site, device, "availability"), lambda m: m["state"] == "online")
        grid, truth = await reading_at_truth(sim, inbox, meter(site, "grid"))
        totals = truth["totals_wh"]
        # float32 registers: ~7 significant digits; truth is rounded to 0.1 W / 0.01 Wh.
        assert (grid["role"], grid["model"]) == ("grid", "eastron_sdm120")
        assert grid["power_w"] == pytest.approx(truth["grid_w"], abs=0.06)
        assert grid["import_energy_wh"] == pytest.approx(totals["import_wh"], abs=0.02, rel=1e-6)
        assert grid["export_energy_wh"] == pytest.approx(totals["export_wh"], abs=0.02, rel=1e-6)
        assert grid["current_a"] == pytest.approx(
            abs(grid["power_w"]) / (grid["voltage_v"] * abs(grid["power_factor"])), rel=1e-5
        )
        assert grid["below_accurate_range"] == (grid["current_a"] < 0.25)
        assert grid["uncertainty_w"] >= abs(grid["power_w"]) * 0.01 - 0.1

        pv, truth = await reading_at_truth(sim, inbox, meter(site, "pv"))
        assert (pv["role"], pv["model"]) == ("pv", "eastron_sdm630")
        assert pv["power_w"] == pytest.approx(truth["pv_w"], abs=0.06) and pv["power_w"] > 0  # generation +
        assert pv["import_energy_wh"] == pytest.approx(truth["totals_wh"]["pv_wh"], abs=0.02, rel=1e-6)
        assert pv["export_energy_wh"] == 0.0
        assert 49.5 < pv["frequency_hz"] < 50.5


async def test_a_bad_meter_goes_offline_alone_and_recovers(
    rig: tuple[Simulator, dict[str, Any]], meter_bridge: tuple[str, Child], mosquitto: Broker
) -> None:
    sim = rig[0]
    site, process = meter_bridge
    async with listening(mosquitto, site) as inbox:
        for device in ("grid", "pv"):
            await inbox.wait_for(meter(site, device, "availability"), lambda m: m["state"] == "online")
        await sim.fault("grid", {"crc": True})
        try:
            mark = inbox.mark()
            offline = await inbox.wait_for(meter(site, "grid", "availability"), lambda m: m["state"] == "offline",
                                           after=mark)  # fmt: skip
            assert "CRC" in offline["reason"] or "frame" in offline["reason"]
            mark = inbox.mark()
            assert len(await inbox.wait_count(meter(site, "pv"), 2, after=mark)) >= 2  # its neighbour carries on
            assert inbox.all(meter(site, "grid"), after=mark) == []  # nothing it could not read
        finally:
            await sim.fault("grid", None)
        await inbox.wait_for(meter(site, "grid", "availability"), lambda m: m["state"] == "online", after=mark)
        log = process.output()
        assert log.count("meter grid failing") == 1 and log.count("meter grid recovered") == 1, log


@pytest.fixture
def shared_bus(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """One RS485 line as a socat pty pair: the bridge's adapter end and the meters' end."""
    with pty_pair(tmp_path / "ttyBridge", tmp_path / "ttyMeters") as ends:
        yield ends


def sdm_values(power: float, current: float, import_kwh: float, export_kwh: float) -> dict[str, float]:
    return {
        "voltage_v": 240.0, "current_a": current, "power_w": power, "apparent_power_va": abs(power),
        "reactive_power_var": 0.0, "power_factor": 1.0 if power >= 0 else -1.0, "phase_angle_deg": 0.0,
        "frequency_hz": 50.0, "import_energy_wh": import_kwh * 1000, "export_energy_wh": export_kwh * 1000,
        "import_reactive_energy_varh": 0.0, "export_reactive_energy_varh": 0.0,
        "total_energy_wh": (import_kwh + export_kwh) * 1000,
    }  # fmt: skip


@pytest.fixture
async def two_meters_on_one_line(shared_bus: tuple[str, str]) -> AsyncIterator[str]:
    bridge_end, meters_end = shared_bus
    regmap = load_map("eastron_sdm120")
    heat_pump = sdm_values(-1800.0, 7.5, 12.0, 345.5)  # its CT clamped backwards: the bridge inverts
    immersion = sdm_values(30.0, 0.125, 88.25, 0.0)  # a trickle, below the accurate range
    context = RegisterContext({1: MapSource(regmap, lambda: heat_pump), 2: MapSource(regmap, lambda: immersion)})
    served = await start_server(context, "modbus_rtu", device=meters_end, baudrate=9600)
    try:
        yield bridge_end
    finally:
        await served.close()


async def test_two_meters_share_one_rs485_line(
    two_meters_on_one_line: str, mosquitto: Broker, tmp_path: Path, rig: tuple[Simulator, dict[str, Any]]
) -> None:
    site = "t" + uuid.uuid4().hex[:10]
    line = {"kind": "modbus_rtu", "device": two_meters_on_one_line, "baudrate": 9600, "timeout_s": 1, "retries": 1}
    data = {
        "site": site,
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
        "meters": [
            {"id": "hp", "model": "eastron_sdm120", "role": "heat_pump", "invert": True,
             "transport": {**line, "unit": 1}, "poll_s": 0.3},
            {"id": "imm", "model": "eastron_sdm120", "role": "immersion", "transport": {**line, "unit": 2},
             "poll_s": 0.3},
        ],
    }  # fmt: skip
    process = start_service("services.meter_bridge", write_config(data, tmp_path / "bus.yaml"), tmp_path / "bus.log")
    try:
        async with listening(mosquitto, site) as inbox:
            hp = await inbox.wait_for(meter(site, "hp"))
            imm = await inbox.wait_for(meter(site, "imm"))
            # Both keep coming: the shared link's lock takes them in turn, no frame collides.
            assert len(await inbox.wait_count(meter(site, "hp"), 3)) >= 3
            assert len(await inbox.wait_count(meter(site, "imm"), 3)) >= 3
        assert (hp["role"], hp["power_w"]) == ("heat_pump", 1800.0)  # inverted: consumption +
        assert (hp["import_energy_wh"], hp["export_energy_wh"]) == (345500.0, 12000.0)
        assert hp["below_accurate_range"] is False and hp["uncertainty_w"] == 18.0
        assert (imm["role"], imm["power_w"], imm["current_a"]) == ("immersion", 30.0, 0.125)
        assert imm["below_accurate_range"] is True and imm["uncertainty_w"] == 60.0
        assert "failing" not in process.output()
    finally:
        process.stop()
