"""Line noise on the RS485 ptys: random bytes written into the grid meter's pty pair (both ends,
so the bridge reads noise between and inside answers and the simulated meter reads it between
requests) and into the BMS's pty. While the noise lasts a poll may fail; afterwards both bridges
resynchronise by themselves: readings flow again and the devices are online, nothing crashed."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

from shared import topics
from shared.messages import Availability, AvailabilityState
from shared.topics import Kind
from tests.support.fault_fleet import FaultFleet

NOISE_S = 3.0
SEED = 8


async def inject(paths: list[Path], seconds: float, rng: random.Random) -> int:
    """Write bursts of random bytes into each pty end for ``seconds``; bytes written."""
    fds = [os.open(p, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK) for p in paths]
    written = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for fd in fds:
                burst = rng.randbytes(rng.randint(1, 40))
                try:
                    written += os.write(fd, burst)
                except BlockingIOError:
                    pass
            await asyncio.sleep(rng.uniform(0.01, 0.15))
    finally:
        for fd in fds:
            os.close(fd)
    return written


async def test_bridges_resynchronise_after_line_noise(fleet: FaultFleet) -> None:
    site = fleet.site
    meter = Path(fleet.endpoints["grid"])
    bms = Path(fleet.endpoints["bat1"])
    ends = [meter, meter.with_name(meter.name + ".sim"), bms]
    assert all(p.exists() for p in ends), ends
    async with fleet.observer() as observer:
        written = await inject(ends, NOISE_S, random.Random(SEED))
        assert written > 1000
        quiet_at = time.monotonic()
        for topic in (topics.meter_state(site, "grid"), topics.battery_state(site, "bat1")):
            # Three good readings after the noise: not one lucky frame, a resynchronised stream.
            await observer.wait(lambda t=topic: len(observer.on(t, quiet_at)) >= 3, 20, f"{topic} readings again")
        for kind, device in ((Kind.METER, "grid"), (Kind.BMS, "bat1")):
            latest = observer.latest(fleet.device_availability(kind, device))
            assert latest is None or (isinstance(latest, Availability) and latest.state is AvailabilityState.ONLINE)
    assert not fleet.dead(), fleet.logs()
