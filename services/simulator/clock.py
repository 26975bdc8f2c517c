"""The simulated clock: simulated time runs ``speed`` times faster than the real monotonic clock."""

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
    _t0: float = field(init=False)

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")
        if self.start.tzinfo is None:
            raise ValueError(f"start {self.start!r} needs a time zone")
        self._t0 = self.monotonic()

    def now_s(self) -> float:
        """Simulated seconds since the Unix epoch."""
        return self.start.timestamp() + (self.monotonic() - self._t0) * self.speed

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_s(), UTC)

    def real_seconds_until(self, sim_s: float) -> float:
        return max(0.0, (sim_s - self.now_s()) / self.speed)
