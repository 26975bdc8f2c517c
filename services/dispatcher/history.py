"""What the house actually did, per planning step: the load forecast's history and the PV clearness.

Every inverter state adds one sample of load and PV to the step (``step_s`` long, aligned to the
epoch) it falls in; a step's value is the mean of its samples. Four weeks are kept (the load
forecast looks for the same weekday and time), in memory and in a small JSON file under the
dispatcher's state dir so that a restart does not forget them (``shared.statefile``: versioned,
written atomically by temp file and rename); a file that cannot be read is moved aside and the
history starts empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.statefile import StateFileError, read_versioned, versioned_json, write_atomic

__all__ = ["History", "HistoryFileError", "Slot"]

FORMAT_VERSION = 1
WHAT = "dispatcher history"
KEEP_DAYS = 28


class HistoryFileError(StateFileError):
    """The history file exists but cannot be used; the message names the file and the problem."""


@dataclass
class Slot:
    load_sum: float = 0.0
    pv_sum: float = 0.0
    n: int = 0

    @property
    def load_w(self) -> float:
        return self.load_sum / self.n if self.n else 0.0

    @property
    def pv_w(self) -> float:
        return self.pv_sum / self.n if self.n else 0.0


class History:
    def __init__(self, step_s: int, keep_days: int = KEEP_DAYS) -> None:
        if step_s <= 0:
            raise ValueError(f"step_s must be > 0, got {step_s}")
        self.step_s = step_s
        self.keep_slots = keep_days * 86400 // step_s
        self.slots: dict[int, Slot] = {}

    def key(self, when: datetime) -> int:
        return int(when.timestamp() // self.step_s)

    def add(self, when: datetime, load_w: float, pv_w: float) -> bool:
        """Add one sample; True when it opened a new step (the previous one is complete)."""
        k = self.key(when)
        fresh = k not in self.slots
        slot = self.slots.setdefault(k, Slot())
        slot.load_sum += max(0.0, load_w)
        slot.pv_sum += max(0.0, pv_w)
        slot.n += 1
        if fresh:
            oldest = k - self.keep_slots
            for stale in [key for key in self.slots if key <= oldest]:
                del self.slots[stale]
        return fresh

    def copy(self) -> History:
        """A copy the planner's worker thread can read while the event loop keeps adding samples
        (iterating a dict another thread grows raises)."""
        out = History(self.step_s)
        out.keep_slots = self.keep_slots
        out.slots = {k: Slot(s.load_sum, s.pv_sum, s.n) for k, s in self.slots.items()}
        return out

    def complete(self, before: datetime) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
        """Steps that ended by ``before``: (UTC starts, mean load W, mean PV W), oldest first."""
        last = self.key(before)
        keys = sorted(k for k in self.slots if k < last)
        starts = pd.DatetimeIndex([datetime.fromtimestamp(k * self.step_s, UTC) for k in keys], tz=UTC)
        load = np.array([self.slots[k].load_w for k in keys], dtype=float)
        pv = np.array([self.slots[k].pv_w for k in keys], dtype=float)
        return starts, load, pv

    # -- persistence -------------------------------------------------------------------------

    def to_json(self) -> str:
        rows = [[k, round(s.load_sum, 3), round(s.pv_sum, 3), s.n] for k, s in sorted(self.slots.items())]
        return versioned_json(FORMAT_VERSION, {"step_s": self.step_s, "slots": rows})

    @classmethod
    def _from_data(cls, data: dict[str, Any], step_s: int, source: str) -> History:
        if data.get("step_s") != step_s:
            # A different step cannot be re-cut into this one without guessing; start over.
            raise HistoryFileError(f"{source}: kept at step_s={data.get('step_s')}, the config now says {step_s}")
        history = cls(step_s)
        slots = data.get("slots", [])
        if not isinstance(slots, list):
            raise HistoryFileError(f"{source}: slots is not a list: {slots!r}")
        for i, row in enumerate(slots):
            try:
                k, load_sum, pv_sum, n = int(row[0]), float(row[1]), float(row[2]), int(row[3])
            except (TypeError, ValueError, IndexError, OverflowError):  # int(1e999): JSON reads inf
                raise HistoryFileError(f"{source}: slot {i} is not [key, load_sum, pv_sum, n]: {row!r}") from None
            if n <= 0 or not np.isfinite(load_sum) or not np.isfinite(pv_sum):
                raise HistoryFileError(f"{source}: slot {i} has n={n}, sums {load_sum}, {pv_sum}")
            history.slots[k] = Slot(load_sum, pv_sum, n)
        return history

    def save(self, path: Path) -> None:
        write_atomic(path, self.to_json())

    def add_draw(self, when: datetime, draw_w: float, on: bool) -> bool:
        """A heat pump's history keeps the same form and file: per step ``load`` is its mean draw
        (W, 0 while off) and ``pv`` the share of its samples with the switch on."""
        return self.add(when, draw_w, 1.0 if on else 0.0)

    @classmethod
    def load(cls, path: Path, step_s: int) -> History:
        """The saved history, or an empty one when there is no file yet. Raises HistoryFileError."""
        data = read_versioned(path, FORMAT_VERSION, WHAT, error=HistoryFileError)
        return cls(step_s) if data is None else cls._from_data(data, step_s, str(path))
