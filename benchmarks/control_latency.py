"""Control latency: from a meter change on the bus to the Modbus write at the (simulated) inverter.

The seed house runs in real time (speed 1) with the real inverter-bridge, meter-bridge, bms-bridge
and dispatcher (``self_use``: zero the grid, controlling on the grid CT meter:
``dispatcher.grid_meter: grid``) as processes. The simulator runs inside this process so
that both ends are stamped with one clock (``time.monotonic``):

1. a load step (``--step-w``, like a kettle) is switched into the simulated house, alternately on
   and off, every ``--period-s`` seconds, in the evening with no PV;
2. ``t_meter``: the first grid ``MeterState`` showing the step arrives at a subscriber on the same
   broker (the dispatcher gets the same message at the same moment). The wait from the step to
   this message is the meter poll interval, which the figure excludes (reported apart);
3. ``t_command``: the dispatcher's ``InverterCommand`` arrives at the same subscriber;
4. ``t_write``: the simulated inverter's 0x42 passive-mode handler runs (the write has crossed the
   inverter bridge, pymodbus and Modbus TCP).

Prints JSON with p50 / p99 / max of ``t_write - t_meter`` (and its split at ``t_command``).

Usage: ``python benchmarks/control_latency.py [--samples 30] [--step-w 800] [--period-s 8]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.fleetrun import percentile, scenario_config
from services.devtools.demo import Fleet, private_broker
from services.simulator import runtime
from services.simulator.physics.house import House
from services.simulator.runtime import Simulator
from shared import topics
from shared.bus import Bus
from shared.config import load_config
from shared.messages import DispatcherDecision, InverterCommand, MeterState
from shared.modbus.sofar_pdu import PASSIVE_FUNCTION

SERVICES = ("inverter_bridge", "bms_bridge", "meter_bridge", "dispatcher")
START = "2026-04-01T20:00:00+00:00"  # 21:00 BST: dark, the battery covering the evening load


@dataclass
class Stamps:
    meter: list[tuple[float, float]] = field(default_factory=list)  # (monotonic, power_w)
    commands: list[float] = field(default_factory=list)
    decisions: list[tuple[float, str, float | None, str | None]] = field(default_factory=list)
    writes: list[tuple[float, str, float]] = field(default_factory=list)  # (monotonic, register, value)

    async def on_meter(self, _topic: str, message: MeterState) -> None:
        self.meter.append((time.monotonic(), message.power_w))

    async def on_command(self, _topic: str, _message: InverterCommand) -> None:
        self.commands.append(time.monotonic())

    async def on_decision(self, _topic: str, message: DispatcherDecision) -> None:
        self.decisions.append((time.monotonic(), message.reason, message.setpoints.battery_power_w, message.detail))


def trace_writes(stamps: Stamps) -> None:
    """Stamp every 0x42 passive-mode write the simulated inverter's Modbus handler receives.

    Instrumentation only: the simulator builds its inverter endpoints with
    ``runtime.custom_handler(house)``; the wrapper stamps the call and hands it on unchanged.
    Must run before the simulator starts its devices.
    """
    original = runtime.custom_handler

    def traced(house: House) -> Any:
        handle = original(house)

        def stamped(unit: int, function: int, register: int, value: int) -> int:
            if function == PASSIVE_FUNCTION:
                stamps.writes.append((time.monotonic(), f"0x{register:04x}", float(value)))
            return int(handle(unit, function, register, value))

        return stamped

    runtime.custom_handler = traced  # type: ignore[assignment]


class LoadStep:
    """An extra load switched into the simulated house's demand (minute array) from now on."""

    HOLD_MINUTES = 120

    def __init__(self, house: House) -> None:
        self.house = house
        self.first: int | None = None

    def _minute(self) -> int:
        return int((self.house.now_s - self.house.series.t0_s) // 60)

    def switch(self, on: bool, watts: float) -> None:
        load = self.house.series.load
        now = self._minute()
        if on:
            self.first = now
            load[now : now + self.HOLD_MINUTES] += watts
        elif self.first is not None:
            load[now : self.first + self.HOLD_MINUTES] -= watts
            self.first = None


async def _first_after(items: list[Any], after: float, timeout: float, key: Any = None) -> Any | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in items:
            stamp = item[0] if isinstance(item, tuple) else item
            if stamp > after and (key is None or key(item)):
                return item
        await asyncio.sleep(0.005)
    return None


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        # Control on the grid CT meter's updates (the seed scenario leaves grid_meter unset, so it
        # controls on the inverter's own CT, i.e. on the inverter's 5 s poll).
        # Every self-use setpoint written (inverter_self_use: false): the latency of a write is
        # what is measured, and by default self-use is the inverter's own and needs none.
        "dispatcher": {"default_mode": "self_use", "grid_meter": "grid", "inverter_self_use": False},
        "simulator": {"control": {"truth_interval_s": 0.5}},
        "log_level": "WARNING",
    }
    samples: list[dict[str, float]] = []
    missed: list[str] = []
    with private_broker(workdir) as broker:
        cfg = load_config(scenario_config(workdir, broker.port, overrides))
        site = cfg.site
        grid_meter = cfg.meters[0].id
        stamps = Stamps()
        trace_writes(stamps)
        sim = Simulator(cfg, speed=1.0, start=START, out=io.StringIO())
        fleet = Fleet(workdir, workdir / "ongrid.yaml")
        async with sim, Bus(cfg.mqtt, site=site, service="simulator") as sim_bus:
            truth = asyncio.create_task(sim.run_forever(sim_bus))
            async with Bus(cfg.mqtt, site=site, service="bench", announce=False) as bus:
                bus.subscribe(topics.meter_state(site, grid_meter), MeterState, stamps.on_meter)
                bus.subscribe(topics.inverter_command(site, cfg.inverters[0].id), InverterCommand, stamps.on_command)
                bus.subscribe(topics.dispatcher_decision(site), DispatcherDecision, stamps.on_decision)
                await bus.subscribed(10)
                try:
                    for service in SERVICES:
                        fleet.start(service, f"services.{service}")
                    # Warm up: the dispatcher commanding, the battery settled on the evening load.
                    if await _first_after(stamps.writes, 0.0, timeout=90) is None:
                        raise RuntimeError(f"no write reached the simulated inverter in 90 s; logs in {workdir}")
                    await asyncio.sleep(args.period_s)
                    step = LoadStep(sim.house)
                    for n in range(args.samples):
                        if fleet.dead():
                            raise RuntimeError(f"services exited: {fleet.dead()}; logs in {workdir / 'logs'}")
                        on = n % 2 == 0
                        before = stamps.meter[-1][1] if stamps.meter else 0.0
                        t_step = time.monotonic()
                        step.switch(on, args.step_w)
                        meter = await _first_after(
                            stamps.meter, t_step, 15, key=lambda m, b=before: abs(m[1] - b) > args.step_w / 2
                        )
                        if meter is None:
                            missed.append(f"sample {n}: no meter reading showed the step")
                        else:
                            t_meter = meter[0]
                            write = await _first_after(stamps.writes, t_meter, 15)
                            command = await _first_after(stamps.commands, t_meter, 0.1)
                            if write is None:
                                missed.append(f"sample {n}: no write within 15 s of the meter reading")
                            else:
                                sample = {"poll_wait_s": t_meter - t_step, "meter_to_write_s": write[0] - t_meter}
                                if command is not None and command < write[0]:
                                    sample["meter_to_command_s"] = command - t_meter
                                    sample["command_to_write_s"] = write[0] - command
                                samples.append(sample)
                        await asyncio.sleep(max(0.0, t_step + args.period_s - time.monotonic()))
                finally:
                    fleet.stop()
                    truth.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await truth

    def stats(key: str) -> dict[str, float]:
        values = [s[key] * 1000 for s in samples if key in s]
        return {
            "n": len(values),
            "p50_ms": round(percentile(values, 50), 1),
            "p99_ms": round(percentile(values, 99), 1),
            "max_ms": round(max(values), 1) if values else float("nan"),
        }

    return {
        "benchmark": "control_latency",
        "scenario": "deploy/scenarios/seed-house.yaml, dispatcher self_use on the grid meter, speed 1",
        "start": START,
        "step_w": args.step_w,
        "transport": f"inverter {cfg.inverters[0].transport.kind}, grid meter {cfg.meters[0].transport.kind}",
        "meter_poll_s": cfg.meters[0].poll_s,
        "meter_to_write": stats("meter_to_write_s"),
        "meter_to_command": stats("meter_to_command_s"),
        "command_to_write": stats("command_to_write_s"),
        "excluded_poll_wait": stats("poll_wait_s"),
        "writes_observed": len(stamps.writes),
        "decisions_seen": len(stamps.decisions),
        "missed": missed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--step-w", type=float, default=800.0)
    parser.add_argument("--period-s", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ongrid-latency-") as tmp:
        result = asyncio.run(measure(args, Path(tmp)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
