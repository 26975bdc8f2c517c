"""The poll rhythm every bridge uses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn


async def run_every(interval_s: float, tick: Callable[[], Awaitable[object]]) -> NoReturn:
    """Call ``tick`` on a fixed schedule, not ``sleep(interval)`` after the work, so polls do not
    drift later by the time each takes; a tick that overruns its slot is followed at once instead
    of by a burst trying to catch up."""
    next_at = time.monotonic()
    while True:
        await tick()
        next_at = max(next_at + interval_s, time.monotonic())
        await asyncio.sleep(next_at - time.monotonic())
