"""The process's notion of "now".

Live, that is the wall clock. Against an accelerated simulator (``clock: simulator`` in the config,
as in the scenario files) every service follows the simulated clock instead, so that readings are
stamped, tariff windows are found and days are cut in simulated time: a simulated day at 60x lasts
24 minutes of wall time but is recorded, planned and reported as a day.

Pure decision code never reads this: it gets ``now`` passed in. Edges (bridges stamping a reading,
the dispatcher taking a snapshot) read ``shared.messages.utc_now()``, which asks this module.
Durations of I/O (poll intervals, timeouts, heartbeats) stay in wall seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class _Anchor:
    sim_time: datetime
    monotonic: float
    speed: float


class FollowedClock:
    """Follows a clock published elsewhere (the simulator's), extrapolating between updates.

    Before the first update it answers wall time, so a service started before the simulator still
    stamps something sensible; ``synced`` tells whether it has heard the simulator yet.
    """

    def __init__(self) -> None:
        self._anchor: _Anchor | None = None

    @property
    def synced(self) -> bool:
        return self._anchor is not None

    @property
    def speed(self) -> float:
        return 1.0 if self._anchor is None else self._anchor.speed

    def update(self, sim_time: datetime, sent_at: datetime, speed: float) -> None:
        """``sent_at`` is the wall time the simulator published ``sim_time``; transit delay is
        removed so that all followers agree to within the broker's latency."""
        delay = max(0.0, (datetime.now(UTC) - sent_at).total_seconds())
        self._anchor = _Anchor(sim_time + timedelta(seconds=delay * speed), time.monotonic(), speed)

    def now(self) -> datetime:
        anchor = self._anchor
        if anchor is None:
            return datetime.now(UTC)
        return anchor.sim_time + timedelta(seconds=(time.monotonic() - anchor.monotonic) * anchor.speed)


_clock: Clock = WallClock()


def install(clock: Clock) -> None:
    global _clock
    _clock = clock


def current() -> Clock:
    return _clock


def now() -> datetime:
    return _clock.now()
