"""Pure: spot a weak or drifting module by comparing it with its siblings over a rolling history.

A module in a parallel stack that has lost capacity, or whose cells drift apart, looks fine on
its own on any single poll; against its siblings, over time, it stands out. Three findings:

* ``weak_module_capacity``: its full capacity (what its BMS has learnt) sits more than
  ``capacity_deficit_pct`` below the median of its siblings;
* ``capacity_fading``: its capacity falls faster than its siblings' (least-squares slope over a
  window of at least ``fade_min_span_days``, in % of its capacity per day) by more than
  ``fade_pct_per_day``;
* ``cell_spread_drift``: the median of its cell voltage spread exceeds the siblings' median by more
  than ``spread_excess_mv`` ("slow death" cells).

Medians over the window, so one noisy poll neither raises nor clears a finding. A finding is
reported when it appears and when it clears, not on every poll.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.messages import ModuleState


@dataclass(frozen=True, slots=True)
class HealthConfig:
    window: int = 720
    min_samples: int = 6
    capacity_deficit_pct: float = 8.0
    fade_pct_per_day: float = 0.5
    # A slope over minutes is noise (a BMS re-learns its capacity in steps): need days of history.
    fade_min_span_days: float = 2.0
    spread_excess_mv: float = 15.0


@dataclass(frozen=True, slots=True)
class Finding:
    module: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _History:
    times_d: deque[float]
    full_ah: deque[float]
    spread_mv: deque[float]


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs; 0 when xs do not vary."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


class HealthMonitor:
    def __init__(self, config: HealthConfig = HealthConfig()) -> None:
        self.config = config
        self._history: dict[int, _History] = {}
        self.active: dict[tuple[int, str], Finding] = {}

    def observe(self, ts: datetime, modules: Sequence[ModuleState]) -> tuple[list[Finding], list[Finding]]:
        """Add one poll; returns (findings raised now, findings cleared now)."""
        t_days = ts.timestamp() / 86_400.0
        for m in modules:
            h = self._history.get(m.index)
            if h is None:
                n = self.config.window
                h = self._history[m.index] = _History(deque(maxlen=n), deque(maxlen=n), deque(maxlen=n))
            if m.full_ah is None or m.cell_spread_mv is None:
                continue
            h.times_d.append(t_days)
            h.full_ah.append(m.full_ah)
            h.spread_mv.append(m.cell_spread_mv)
        current = {(f.module, f.code): f for f in self._evaluate([m.index for m in modules])}
        raised = [f for key, f in current.items() if key not in self.active]
        cleared = [f for key, f in self.active.items() if key not in current]
        self.active = current
        return raised, cleared

    def _evaluate(self, indexes: list[int]) -> list[Finding]:
        cfg = self.config
        ready = {i: self._history[i] for i in indexes if len(self._history[i].full_ah) >= cfg.min_samples}
        if len(ready) < 2:
            return []
        capacity = {i: statistics.median(h.full_ah) for i, h in ready.items()}
        spread = {i: statistics.median(h.spread_mv) for i, h in ready.items()}
        fade = {
            i: 100.0 * slope(list(h.times_d), list(h.full_ah)) / capacity[i] if capacity[i] > 0 else 0.0
            for i, h in ready.items()
        }
        findings: list[Finding] = []
        for i in ready:
            others = [j for j in ready if j != i]
            sib_capacity = statistics.median(capacity[j] for j in others)
            sib_spread = statistics.median(spread[j] for j in others)
            sib_fade = statistics.median(fade[j] for j in others)
            deficit = 100.0 * (sib_capacity - capacity[i]) / sib_capacity if sib_capacity > 0 else 0.0
            if deficit > cfg.capacity_deficit_pct:
                message = (
                    f"module {i} holds {capacity[i]:.1f} Ah, {deficit:.1f} % below its siblings' "
                    f"{sib_capacity:.1f} Ah"
                )
                details = {"full_ah": capacity[i], "siblings_full_ah": sib_capacity, "deficit_pct": deficit}
                findings.append(Finding(i, "weak_module_capacity", message, details))
            span_days = ready[i].times_d[-1] - ready[i].times_d[0]
            # A sibling gaining capacity (re-calibration) must not make the others look like fading.
            excess = min(sib_fade, 0.0) - fade[i]
            if span_days >= cfg.fade_min_span_days and excess > cfg.fade_pct_per_day:
                message = f"module {i} loses {-fade[i]:.2f} %/day of capacity, siblings {-sib_fade:.2f} %/day"
                details = {"fade_pct_per_day": fade[i], "siblings_fade_pct_per_day": sib_fade}
                findings.append(Finding(i, "capacity_fading", message, details))
            if spread[i] - sib_spread > cfg.spread_excess_mv:
                message = f"module {i} cell spread {spread[i]:.0f} mV, its siblings' {sib_spread:.0f} mV"
                details = {"cell_spread_mv": spread[i], "siblings_cell_spread_mv": sib_spread}
                findings.append(Finding(i, "cell_spread_drift", message, details))
        return findings
