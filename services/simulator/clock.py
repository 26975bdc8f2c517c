"""The simulated clock: simulated time runs ``speed`` times faster than the real monotonic clock.

A clock may start *held*: it stands at ``start`` until ``release()``. An accelerated run holds it
while the services start (seconds of imports on a busy machine are minutes of simulated time at
600x), so no simulated time passes that nobody reads, plans or records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(slots=True)
class SimClock:
    start: datetime
    speed: float = 1.0
    monotonic: Callable[[], float] = time.monotonic
    held: bool = False
    _t0: float = field(init=False)

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")
        if self.start.tzinfo is None:
            raise ValueError(f"start {self.start!r} needs a time zone")
        self._t0 = self.monotonic()

    def release(self) -> bool:
        """Let a held clock run from ``start``, from now on; False if it was running already."""
        if not self.held:
            return False
        self.held = False
        self._t0 = self.monotonic()
        return True

    @property
    def rate(self) -> float:
        """Simulated seconds per real second right now: 0 while held."""
        return 0.0 if self.held else self.speed

    def now_s(self) -> float:
        """Simulated seconds since the Unix epoch."""
        if self.held:
            return self.start.timestamp()
        return self.start.timestamp() + (self.monotonic() - self._t0) * self.speed

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_s(), UTC)
