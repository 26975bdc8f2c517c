"""Modbus writes per simulated day (the write budget story) and peak memory per service. JSON.

The seed house runs with every service as its own process (simulator, inverter-bridge,
bms-bridge, meter-bridge, dispatcher in ``auto`` with its planner, recorder) for ``--hours`` of
simulated time at ``--speed``. Counted:

* ``writes_at_inverter``: passive-mode (0x42) writes that reached the *simulated inverter*,
  accepted or refused (every one wears its flash), read from the simulator's control channel
  (``GET /truth`` -> ``inverter.writes_received``; ``writes_accepted`` of them it accepted);
  heartbeats (0x49) are not writes to a setting and are not counted;
* ``bridge_write_counters``: what the inverter bridge itself counted (``WriteCounters``), with the
  no-op writes it skipped and the commands it refused for lack of budget;
* ``commands``: ``InverterCommand`` messages the dispatcher sent (changes, renewals, hand-backs);
  ``acks``: the bridge's answers by status (first answers only, not the verification follow-ups):
  a ``rejected`` one is a refused command;
* ``decision_reasons``: the dispatcher's decisions by reason code, and ``handed_back`` those of
  them in which the inverter ran its own self-use (``commanding`` false: no setpoint needed);
* ``peak_rss_mb``: ``VmHWM`` of each process at the end of the run.

Accelerated time needs faster polls in wall time: the device polls are set to ``--meter-poll-sim-s``
etc. of *simulated* time divided by the speed, and the dispatcher's lease / staleness limits and the
inverter's own passive timeout are widened (in simulated seconds) so that a scheduling hiccup of the
shared machine, which is ``speed`` times longer in simulated time, is not taken for a dead service;
the BMS line runs at ``--bms-baudrate`` (115200) on both ends, since at 9600 baud one poll of five
modules lasts minutes of simulated time at 120x. ``stale_inputs`` decisions in the output show
whether the widening was enough.

Usage: ``python benchmarks/writes_per_day.py [--hours 24] [--speed 120] [--day 2026-04-01]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fleetrun import FLEET_SERVICES, scenario_config
from services.devtools.demo import Fleet, private_broker
from services.devtools.endpoints import read_endpoints
from services.devtools.fleet_start import release_clock, service_name, wait_online
from services.devtools.procstats import memory_mb
from shared import topics
from shared.bus import Bus
from shared.config import load_config
from shared.messages import AckStatus, CommandAck, DispatcherDecision, InverterCommand, SimTruth, WriteCounters
from shared.topics import Kind, Stream


class Tally:
    def __init__(self) -> None:
        self.sim_time: datetime | None = None
        self.counters: dict[str, WriteCounters] = {}
        self.commands: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.handed_back: Counter[str] = Counter()
        self.acks: Counter[str] = Counter()
        self.refusals: list[str] = []
        self.decisions = 0
        self.stale_details: list[str] = []

    async def truth(self, _topic: str, message: SimTruth) -> None:
        self.sim_time = message.sim_time

    async def counter(self, _topic: str, message: WriteCounters) -> None:
        self.counters[message.day.isoformat()] = message

    async def command(self, _topic: str, message: InverterCommand) -> None:
        self.commands[message.mode.value] += 1

    async def ack(self, _topic: str, message: CommandAck) -> None:
        if message.verified is not None:
            return
        self.acks[message.status.value] += 1
        if message.status is not AckStatus.ACCEPTED and len(self.refusals) < 5:
            self.refusals.append(message.reason or "")

    async def decision(self, _topic: str, message: DispatcherDecision) -> None:
        self.decisions += 1
        self.reasons[message.reason] += 1
        if not message.commanding:
            self.handed_back[message.reason] += 1
        if message.reason == "stale_inputs" and message.detail and len(self.stale_details) < 5:
            self.stale_details.append(message.detail)


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(json.loads(response.read()))


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    speed = float(args.speed)
    overrides: dict[str, Any] = {
        "inverter": {"poll_s": args.inverter_poll_sim_s / speed},
        "meter": {"poll_s": args.meter_poll_sim_s / speed},
        "battery": {"poll_s": args.bms_poll_sim_s / speed},
        "dispatcher": {"lease_s": 600, "stale_after_s": 600},
        "simulator": {"inverter": {"passive_timeout_s": 300}, "control": {"truth_interval_s": 0.2}},
        "recorder": {"status_interval_s": 5},
        "log_level": "WARNING",
    }
    with private_broker(workdir) as broker:
        config = scenario_config(workdir, broker.port, overrides, bms_baudrate=args.bms_baudrate)
        cfg = load_config(config)
        zone = ZoneInfo(cfg.tariff.timezone)
        day = date.fromisoformat(args.day)
        start = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
        end = start + timedelta(hours=args.hours)
        fleet = Fleet(workdir, config)
        tally = Tally()
        site = cfg.site
        async with Bus(cfg.mqtt, site=site, service="bench", announce=False) as bus:
            bus.subscribe(topics.simulator_truth(site), SimTruth, tally.truth)
            bus.subscribe(topics.topic(site, Kind.INVERTER, topics.ANY, Stream.COUNTERS), WriteCounters, tally.counter)
            bus.subscribe(topics.topic(site, Kind.INVERTER, topics.ANY, Stream.COMMAND), InverterCommand, tally.command)
            bus.subscribe(topics.dispatcher_decision(site), DispatcherDecision, tally.decision)
            bus.subscribe(topics.topic(site, Kind.INVERTER, topics.ANY, Stream.ACK), CommandAck, tally.ack)
            await bus.subscribed(10)
            try:
                clock = ("--speed", str(speed), "--start", start.isoformat(), "--hold")
                simulator = fleet.start("simulator", "services.simulator", *clock, "--mqtt")
                endpoints = await asyncio.to_thread(read_endpoints, simulator, 60)
                control = next(e["endpoint"] for e in endpoints if e["device"] == "control")
                for service in FLEET_SERVICES:
                    fleet.start(service, f"services.{service}")
                await wait_online(cfg.mqtt, site, map(service_name, FLEET_SERVICES), dead=fleet.dead)
                await asyncio.to_thread(release_clock, control)
                t0 = time.monotonic()
                while tally.sim_time is None or tally.sim_time < end:
                    if fleet.dead():
                        break
                    if time.monotonic() - t0 > args.hours * 3600 / speed * 3 + 120:
                        raise RuntimeError("the simulated day is taking over three times its expected wall time")
                    await asyncio.sleep(0.5)
                wall_s = time.monotonic() - t0
                truth = await asyncio.to_thread(_get_json, control + "/truth")
                peak = {name: memory_mb(p.pid)[1] for name, p in fleet.processes.items() if p.poll() is None}
                dead = fleet.dead()
            finally:
                fleet.stop()
    hours = args.hours
    received = int(truth["inverter"]["writes_received"])
    bridge = {
        day_: {
            "writes": sum(c.writes.values()),
            "by_register": c.writes,
            "skipped_noop": c.skipped_noop,
            "refused_budget": c.refused_budget,
            "budget_per_day": c.budget_per_day,
        }
        for day_, c in sorted(tally.counters.items())
    }
    return {
        "benchmark": "writes_per_day",
        "scenario": "deploy/scenarios/seed-house.yaml",
        "start": start.isoformat(),
        "simulated_hours": hours,
        "speed": speed,
        "wall_s": round(wall_s, 1),
        "bms_baudrate": args.bms_baudrate,
        "poll_sim_s": {
            "inverter": args.inverter_poll_sim_s,
            "meter": args.meter_poll_sim_s,
            "bms": args.bms_poll_sim_s,
        },
        "writes_at_inverter": received,
        "writes_accepted": int(truth["inverter"]["commands_accepted"]),
        "writes_per_day": round(received * 24 / hours, 1),
        "inverter_timeouts": truth["inverter"]["timeouts"],
        "bridge_write_counters": bridge,
        "commands": dict(tally.commands),
        "acks": dict(tally.acks),
        "refusal_examples": tally.refusals,
        "decisions": tally.decisions,
        "decision_reasons": dict(tally.reasons.most_common()),
        "handed_back": dict(tally.handed_back.most_common()),
        "stale_examples": tally.stale_details,
        "battery_totals_wh": {k: truth["totals_wh"].get(k) for k in ("charge_wh", "discharge_wh")},
        "peak_rss_mb": {name: round(value, 1) for name, value in sorted(peak.items())},
        "exited_early": dead,
        "logs": str(workdir / "logs") if args.keep else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--speed", type=float, default=120.0)
    parser.add_argument("--day", default="2026-04-01", help="simulated day (local midnight start)")
    parser.add_argument("--meter-poll-sim-s", type=float, default=10.0)
    parser.add_argument("--inverter-poll-sim-s", type=float, default=10.0)
    parser.add_argument("--bms-poll-sim-s", type=float, default=30.0)
    parser.add_argument("--bms-baudrate", type=int, default=115200, help="BMS line speed on both ends")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) under var/bench")
    args = parser.parse_args()
    if args.keep:
        workdir = Path("var/bench/writes_per_day").resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run(args, workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="ongrid-day-") as tmp:
            result = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
