"""A heat pump on spare battery, pure: its run window, its battery budget per period, its SoC floor.

The seed's owner ran a heat pump in the evening and night from the battery's spare 1.8 kWh and
stopped it at 25 %. Per call, for one ``HeatPumpLoad``:

* the budget period in force (``budget_period_hours`` long, starting at the run window's start,
  local midnight without a window) and the battery energy the heat pump used in it;
* inside ``run_window``: on while budget is left, the SoC is above its floor (the load's
  ``min_soc_pct``, never below the dispatcher's reserve) and the battery may discharge now (not a
  plan step or a mode that holds or charges it), the battery covering it. Otherwise
  ``after_budget`` decides: ``off`` switches it off (it runs on the battery's spare or not at all),
  ``grid`` leaves it on and the battery stops feeding it (its draw is kept out of the battery's
  target);
* outside the window (or without one): no say on the switch (the surplus rule decides), but the
  battery still feeds it only within the budget and above the floor.

Budget use is what the battery gave the heat pump: with its own CT, the smaller of its draw and
the battery's discharge; without one, the battery's whole discharge while it was switched on (an
over-estimate when the house draws at the same time: the budget runs out early, never late).

For the planner, ``expected_draw_w`` is the heat pump's draw per plan step: inside the window what
it drew while switched on at that time of day over the last days (its duty: the weather decides
it), before any such history its rating times ``DEFAULT_DUTY``; with ``after_budget: off`` no more
in each period's window than the budget (spent from the window's start, as the dispatcher does);
outside the window what it drew there on average (surplus runs). The planner adds it to the house's
base load, which is the recorded load minus the heat pump's recorded draw, so nothing is counted
twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from shared.config.loads import HeatPumpLoad, RunWindow

__all__ = [
    "DEFAULT_DUTY",
    "FLOOR_HYSTERESIS_PCT",
    "RECENT_DAYS",
    "Budget",
    "HeatPumpCall",
    "above_floor",
    "battery_fed_w",
    "battery_fed_wh",
    "decide",
    "expected_draw_w",
    "in_window",
    "period_start",
    "unattended_on",
]

# Once the floor stopped the battery feeding it, the SoC must rise this far above the floor before
# it feeds it again: a BMS reporting whole percent would otherwise flip it on every reading.
FLOOR_HYSTERESIS_PCT = 2.0

# Before any history of it running: the share of its rating a heat pump draws while switched on
# (compressors modulate and cycle; a UK winter night's is around half).
DEFAULT_DUTY = 0.5
# Days of its recorded draw the planner's expectation looks back over (the weather changes).
RECENT_DAYS = 7

# Budget periods are counted from this local wall time (a Monday), so a 24 h period always starts
# at the window's start and a 168 h one on Mondays.
_EPOCH = datetime(2000, 1, 3)


@dataclass(frozen=True)
class Budget:
    """One heat pump's budget in the controller's memory."""

    load: str
    period_start: datetime
    used_wh: float = 0.0
    feeding: bool = False  # the battery fed it on the last call (the floor's hysteresis)


@dataclass(frozen=True)
class HeatPumpCall:
    """``on`` None: not the window's call (the surplus rule decides the switch)."""

    on: bool | None
    battery_feeds: bool
    reason: str
    budget: Budget
    left_wh: float


@lru_cache(maxsize=16)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def in_window(window: RunWindow, now: datetime, timezone: str) -> bool:
    """Whether ``now`` is inside the daily window, read in local time; ``end`` before ``start``
    crosses midnight. The start is inside, the end is not."""
    local = now.astimezone(_zone(timezone))
    t = local.hour * 60 + local.minute + local.second / 60.0
    start, end = _minutes(window.start), _minutes(window.end)
    if start < end:
        return start <= t < end
    return t >= start or t < end


def period_start(load: HeatPumpLoad, now: datetime, timezone: str) -> datetime:
    """Start of the budget period holding ``now``: periods of ``budget_period_hours`` counted in
    local wall time from the window's start (local midnight without a window)."""
    zone = _zone(timezone)
    anchor = _minutes(load.run_window.start) if load.run_window is not None else 0
    first = _EPOCH + timedelta(minutes=anchor)
    local = now.astimezone(zone).replace(tzinfo=None)
    period = timedelta(hours=load.budget_period_hours)
    n = (local - first) // period
    return (first + n * period).replace(tzinfo=zone)


def above_floor(load: HeatPumpLoad, reserve_pct: float, soc_pct: float, feeding: bool) -> bool:
    """The battery may (go on) feeding it at ``soc_pct``: above its floor (its ``min_soc_pct`` or
    the reserve, whichever is higher) while it was feeding, ``FLOOR_HYSTERESIS_PCT`` above it to
    resume. One rule for the dispatcher's call and the plan's walk."""
    floor = max(load.min_soc_pct, reserve_pct)
    return soc_pct > floor if feeding else soc_pct >= floor + FLOOR_HYSTERESIS_PCT


def battery_fed_w(power_w: float | None, battery_w: float, was_on: bool) -> float:
    """Battery power (W) going to the heat pump: with its own CT (``power_w``), the smaller of its
    draw and the battery's discharge; without one, the battery's whole discharge while it was
    switched on. ``battery_w``: the discharge left for it (the arbiter shares one discharge out
    over several heat pumps in its order)."""
    discharge = max(0.0, battery_w)
    if power_w is not None:
        return min(max(0.0, power_w), discharge)
    return discharge if was_on else 0.0


def battery_fed_wh(power_w: float | None, battery_w: float, was_on: bool, dt_s: float) -> float:
    """Battery energy (Wh) that went to the heat pump over the last ``dt_s`` (``battery_fed_w``)."""
    return battery_fed_w(power_w, battery_w, was_on) * max(0.0, dt_s) / 3600.0


def decide(
    load: HeatPumpLoad,
    budget: Budget | None,
    *,
    now: datetime,
    timezone: str,
    soc_pct: float,
    reserve_pct: float,
    battery_w: float,
    power_w: float | None,
    was_on: bool,
    dt_s: float,
    battery_free: bool = True,
) -> HeatPumpCall:
    """One call for one heat pump (see the module docstring). ``reserve_pct``: where the dispatcher
    stops discharging; ``power_w``: its own CT (None without one); ``was_on``: its switch as last
    decided; ``dt_s``: seconds since the last call; ``battery_free``: the mode or the plan's step
    lets the battery discharge now."""
    start = period_start(load, now, timezone)
    used = budget.used_wh if budget is not None and budget.period_start == start else 0.0
    feeding = budget.feeding if budget is not None else False
    used += battery_fed_wh(power_w, battery_w, was_on, dt_s)
    left = load.battery_budget_kwh * 1000.0 - used
    feeds = left > 0 and above_floor(load, reserve_pct, soc_pct, feeding)
    spent = "heat_pump_budget_spent" if left <= 0 else "heat_pump_soc_floor"
    after = Budget(load.id, start, used, feeds)
    window = load.run_window
    if window is None or not in_window(window, now, timezone):
        return HeatPumpCall(None, feeds, "heat_pump_surplus", after, max(0.0, left))
    if feeds and battery_free:
        return HeatPumpCall(True, True, "heat_pump_window", after, left)
    if feeds:
        spent = "heat_pump_battery_held"  # budget left, but the plan or the mode keeps the battery
    if load.after_budget == "grid":
        return HeatPumpCall(True, False, spent + "_grid", after, max(0.0, left))
    return HeatPumpCall(False, False, spent, after, max(0.0, left))


def unattended_on(
    load: HeatPumpLoad, starts: pd.DatetimeIndex, timezone: str, draw_w: np.ndarray, step_s: float
) -> np.ndarray:
    """Its switch per step (UTC starts, ``step_s`` apart) with no battery to spend the budget on:
    on through the run window, and under ``after_budget: off`` only until it has drawn the budget
    in that period (from the window's start, as the dispatcher spends it and ``expected_draw_w``
    assumes), ``draw_w`` being what it draws while on. Decided at a step, acting from the next (as
    every decided switch does). Off outside the window, and always without one (it would run on
    surplus only, which needs the dispatcher)."""
    n = len(starts)
    out = np.zeros(n, dtype=bool)
    if load.run_window is None or n == 0:
        return out
    inside = _window_mask(load.run_window, starts.tz_convert(_zone(timezone)))
    if load.after_budget == "grid":
        out[1:] = inside[:-1]
        return out
    periods = _periods(load, starts.tz_convert(_zone(timezone)))
    budget = load.battery_budget_kwh * 1000.0
    dt_h = step_s / 3600.0
    used: dict[int, float] = {}
    for k in range(n):
        period = int(periods[k])
        if k + 1 < n and inside[k] and used.get(period, 0.0) < budget:
            out[k + 1] = True
        if out[k]:
            # What it drew over step k counts toward the period the step is in.
            used[period] = used.get(period, 0.0) + max(0.0, float(draw_w[k])) * dt_h
    return out


def _window_mask(window: RunWindow, local: pd.DatetimeIndex) -> np.ndarray:
    t = np.asarray(local.hour * 60 + local.minute, dtype=float)
    start, end = _minutes(window.start), _minutes(window.end)
    return (t >= start) & (t < end) if start < end else (t >= start) | (t < end)


def _periods(load: HeatPumpLoad, local: pd.DatetimeIndex) -> np.ndarray:
    anchor = _minutes(load.run_window.start) if load.run_window is not None else 0
    first = pd.Timestamp(_EPOCH + timedelta(minutes=anchor))
    since = local.tz_localize(None) - first
    return np.asarray(since // pd.Timedelta(hours=load.budget_period_hours), dtype=np.int64)


def expected_draw_w(
    load: HeatPumpLoad,
    starts: pd.DatetimeIndex,
    step_s: int,
    timezone: str,
    past: pd.DatetimeIndex,
    past_draw_w: np.ndarray,
    past_on: np.ndarray,
    used_wh: float = 0.0,
) -> np.ndarray:
    """The heat pump's expected draw (W) over each step from ``starts`` (UTC, ``step_s`` apart),
    from its history: ``past`` (UTC starts of completed steps), its mean draw over each
    (``past_draw_w``, 0 while off) and the share of each it was switched on (``past_on``).
    ``used_wh``: battery energy it already used in the period in force. See the module docstring."""
    n = len(starts)
    if n == 0:
        return np.zeros(0)
    slots = max(1, round(86400 / step_s))
    zone = _zone(timezone)
    local = starts.tz_convert(zone)
    t_slot = np.clip(np.asarray((local.hour * 3600 + local.minute * 60) // step_s), 0, slots - 1)
    recent = past >= starts[0] - pd.Timedelta(days=RECENT_DAYS)
    draw = np.maximum(np.asarray(past_draw_w, dtype=float)[recent], 0.0)
    on = np.clip(np.asarray(past_on, dtype=float)[recent], 0.0, 1.0)
    p_local = past[recent].tz_convert(zone)
    h_slot = np.clip(np.asarray((p_local.hour * 3600 + p_local.minute * 60) // step_s), 0, slots - 1)
    draw_sum = np.bincount(h_slot, weights=draw, minlength=slots)
    on_sum = np.bincount(h_slot, weights=on, minlength=slots)
    count = np.bincount(h_slot, minlength=slots)
    # While switched on: energy over time on, per time of day, else over every time of day.
    overall = float(draw.sum() / on.sum()) if on.sum() >= 1.0 else load.rated_power_w * DEFAULT_DUTY
    with np.errstate(invalid="ignore", divide="ignore"):
        while_on = np.where(on_sum >= 0.5, draw_sum / on_sum, overall)
        average = np.where(count > 0, draw_sum / count, 0.0)
    inside = _window_mask(load.run_window, local) if load.run_window is not None else np.zeros(n, dtype=bool)
    out = np.where(inside, while_on[t_slot], average[t_slot])
    if load.after_budget == "off" and load.run_window is not None:
        # Off once the budget is spent: each period's window gets the budget, from its start.
        dt_h = step_s / 3600.0
        periods = _periods(load, local)
        budget = load.battery_budget_kwh * 1000.0
        left = {int(periods[0]): max(0.0, budget - used_wh)}
        for k in np.flatnonzero(inside):
            have = left.setdefault(int(periods[k]), budget)
            out[k] = min(out[k], have / dt_h)
            left[int(periods[k])] = have - out[k] * dt_h
    return np.asarray(np.maximum(out, 0.0), dtype=float)
