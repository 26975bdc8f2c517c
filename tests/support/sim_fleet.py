"""The end-to-end suites' run of the real fleet over a simulated stretch of time, written once.

The simulator (held at ``start`` until every service is online) and the inverter, meter and BMS
bridges and the dispatcher, each its own process, on the given broker; an observer collects the
simulator's ground truth and the messages of the topics asked for, each parsed into its contract
model, until the simulated clock reaches ``end``. The observer subscribes, and sees the held
clock's truth at ``start``, before it releases the clock: every run's truths cover the same
simulated window from ``start``, so a cumulative counter's rise from the first truth is the whole
run's. A process that exits early, or a run that takes longer than its simulated span at
``speed`` plus ``slack_s`` of wall time, fails the test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from services.devtools.demo import Fleet
from services.devtools.endpoints import endpoint_map, read_endpoints
from services.devtools.fleet_start import release_clock, service_name, wait_online
from services.devtools.localbroker import Broker
from shared import topics
from shared.bus import Bus
from shared.config import MqttConfig
from shared.messages import Message, SimTruth

__all__ = ["FLEET_SERVICES", "FleetRun", "add_tcp_ct", "fleet_polls", "run_fleet", "watch_fleet"]

FLEET_SERVICES = ("inverter_bridge", "meter_bridge", "bms_bridge", "dispatcher")


@dataclass
class FleetRun:
    """One run: the fleet (for its logs), the simulator's truths, and each watched topic's messages
    in the order they arrived."""

    fleet: Fleet
    truths: list[SimTruth] = field(default_factory=list)
    messages: dict[str, list[Any]] = field(default_factory=dict)


async def watch_fleet(
    mqtt: MqttConfig,
    site: str,
    fleet: Fleet,
    watch: Mapping[str, type[Message]],
    *,
    start: datetime,
    end: datetime,
    wall_s: float,
    services: Iterable[str],
    control_url: str,
) -> tuple[list[SimTruth], dict[str, list[Any]]]:
    """The simulator's truths and each topic of ``watch`` (topic: model) from ``start`` until a
    truth at ``end``.

    Subscribes first, waits until ``services`` (announced names) are online and a truth of the
    held clock at ``start`` has arrived, then releases the clock at ``control_url``: no truth of
    the run is missed. Fails when a process of ``fleet`` exits, the held clock's truth is not at
    ``start``, or ``wall_s`` wall seconds pass after the release before the run reaches ``end``."""
    truths: list[SimTruth] = []
    messages: dict[str, list[Any]] = {topic: [] for topic in watch}

    async def on_truth(_topic: str, truth: SimTruth) -> None:
        truths.append(truth)

    def alive() -> None:
        dead = fleet.dead()
        assert not dead, f"{dead} exited early; logs in {fleet.workdir / 'logs'}"

    async with Bus(mqtt, site=site, service="e2e-observer", announce=False) as bus:
        bus.subscribe(topics.simulator_truth(site), SimTruth, on_truth)
        for topic, model in watch.items():

            async def on_message(_topic: str, message: Any, into: list[Any] = messages[topic]) -> None:
                into.append(message)

            bus.subscribe(topic, model, on_message)
        await bus.subscribed(10)
        # The simulated clock starts once every service is online: at high speed a dispatcher still
        # importing HiGHS on a busy machine would miss the first hour.
        await wait_online(mqtt, site, services, dead=fleet.dead)
        ready_by = time.monotonic() + 30
        while not truths:
            alive()
            assert time.monotonic() < ready_by, "no truth from the held simulator within 30 s"
            await asyncio.sleep(0.1)
        assert truths[0].sim_time == start, f"the held clock's first truth is at {truths[0].sim_time}, not {start}"
        await asyncio.to_thread(release_clock, control_url)
        wall_limit = time.monotonic() + wall_s
        while truths[-1].sim_time < end:
            alive()
            assert time.monotonic() < wall_limit, f"the simulated run to {end:%Y-%m-%d %H:%M} did not finish in time"
            await asyncio.sleep(0.5)
    return truths, messages


def run_fleet(
    workdir: Path,
    broker: Broker,
    data: dict[str, Any],
    *,
    speed: float,
    start: datetime,
    end: datetime,
    watch: Mapping[str, type[Message]],
    slack_s: float,
) -> FleetRun:
    """Write ``data`` as ``workdir/ongrid.yaml``, run the fleet on it from ``start`` to ``end`` at
    ``speed``, watching ``watch``; the fleet is stopped on return."""
    config = workdir / "ongrid.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    fleet = Fleet(workdir, config)
    clock = ("--speed", str(speed), "--start", start.isoformat(), "--mqtt", "--hold")
    try:
        fleet.start("simulator", "services.simulator", *clock)
        endpoints = read_endpoints(fleet.processes["simulator"], timeout=60, log=fleet.log_path("simulator"))
        for service in FLEET_SERVICES:
            fleet.start(service, f"services.{service}")
        mqtt = MqttConfig(host=broker.host, port=broker.port)
        wall_s = (end - start).total_seconds() / speed + slack_s
        truths, messages = asyncio.run(
            watch_fleet(
                mqtt, data["site"], fleet, watch, start=start, end=end, wall_s=wall_s,
                services=map(service_name, FLEET_SERVICES), control_url=endpoint_map(endpoints)["control"],
            )
        )  # fmt: skip
    finally:
        fleet.stop()
    return FleetRun(fleet, truths, messages)


# -- the scenario's parts the end-to-end runs share ------------------------------------------------


def add_tcp_ct(data: dict[str, Any], *, meter: str, position: str, role: str, port: int) -> None:
    """A simulated Eastron SDM120 at ``position`` served on Modbus TCP ``port`` (device
    ``<meter>-meter``), and the fleet's meter ``meter`` reading it in role ``role``: the same port,
    which ``relocate_scenario`` then remaps to one free port for both. Call before relocating."""
    sim = data["simulator"]
    sim["meters"].append({"id": meter, "position": position})
    sim["devices"].append(
        {"id": f"{meter}-meter", "role": "meter", "model": "eastron_sdm120", "meter": meter,
         "listen": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": port}}
    )  # fmt: skip
    data["meters"].append(
        {"id": meter, "model": "eastron_sdm120", "role": role,
         "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": port, "unit": 1}}
    )  # fmt: skip


def fleet_polls(data: dict[str, Any], workdir: Path) -> None:
    """The fleet's cadence in the end-to-end runs: the inverter and every meter polled each wall
    second, the BMS every two; state kept under ``workdir/state``; the dispatcher reading the grid
    meter; INFO logs."""
    state = str(workdir / "state")
    data["inverters"][0].update(poll_s=1.0, state_dir=state)
    for meter in data["meters"]:
        meter["poll_s"] = 1.0
    data["batteries"][0]["poll_s"] = 2.0
    data["dispatcher"].update(grid_meter="grid", state_dir=state)
    data["log_level"] = "INFO"
