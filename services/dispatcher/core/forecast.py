"""Forecasts for the planner, pure: PV from clear-sky scaled by learned clearness; load from history.

PV: pvlib clear-sky irradiance (the simplified Solis model, which needs no data files) transposed
to the configured array, times kWp and a fixed loss factor, times a clearness learned from recent
actuals (actual PV energy over clear-sky PV energy for the same hours). An external forecast (a
``Forecast`` message, e.g. Solcast via Node-RED) replaces it where it covers the horizon.

Load: the mean of the same weekday and time of day over recent weeks; where that is missing, the
mean of the same time of day on any day; before any history, a typical UK evening-peaked shape
scaled to ``default_daily_load_kwh``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "SCENARIO_DAYS",
    "PvArray",
    "clear_sky_pv_w",
    "clearness",
    "default_load_shape",
    "history_scenarios",
    "load_profile_forecast",
]

# Days of history that become the planner's scenarios (one joint load-and-PV day each).
SCENARIO_DAYS = 7

# Inverter, wiring, soiling and temperature losses of a typical rooftop system (PVWatts' 14%).
SYSTEM_LOSSES = 0.14


@dataclass(frozen=True)
class PvArray:
    kwp: float
    tilt_deg: float
    azimuth_deg: float
    latitude: float
    longitude: float


def clear_sky_pv_w(array: PvArray, starts: pd.DatetimeIndex, step_s: int) -> np.ndarray:
    """Mean clear-sky AC power (W) of the array over each step (evaluated at the step's middle)."""
    if array.kwp == 0 or len(starts) == 0:
        return np.zeros(len(starts))
    # Imported here: ~0.7-1.4 s (it brings scipy), and a backtest needs it only for the days
    # before the data holds a week of history.
    import pvlib

    middle = pd.DatetimeIndex(starts) + pd.Timedelta(seconds=step_s / 2)
    location = pvlib.location.Location(array.latitude, array.longitude)
    solar = location.get_solarposition(middle)
    sky = location.get_clearsky(middle, model="simplified_solis", solar_position=solar)
    poa = pvlib.irradiance.get_total_irradiance(
        array.tilt_deg,
        array.azimuth_deg,
        solar["apparent_zenith"],
        solar["azimuth"],
        sky["dni"],
        sky["ghi"],
        sky["dhi"],
    )["poa_global"]
    power = array.kwp * 1000.0 * np.asarray(poa.fillna(0.0)) / 1000.0 * (1 - SYSTEM_LOSSES)
    return np.clip(power, 0.0, array.kwp * 1000.0)


def clearness(actual_w: Sequence[float] | np.ndarray, clear_w: Sequence[float] | np.ndarray) -> float:
    """Ratio of actual to clear-sky PV energy over the same steps, within [0.05, 1.2].

    With too little clear-sky energy to judge (night, or no history) the answer is 0.6, about a
    UK year's mean, rather than a wild ratio of two tiny numbers.
    """
    actual = np.asarray(actual_w, dtype=float)
    clear = np.asarray(clear_w, dtype=float)
    total = float(clear.sum())
    if total < 1e-9 or total < 0.05 * float(np.max(clear, initial=0.0)) * max(len(clear), 1):
        return 0.6
    return float(np.clip(actual.sum() / total, 0.05, 1.2))


def default_load_shape(slots_per_day: int) -> np.ndarray:
    """A typical UK household day, mean 1.0: low night, morning bump, evening peak."""
    hours = (np.arange(slots_per_day) + 0.5) * 24.0 / slots_per_day
    shape = (
        0.45
        + 0.55 * np.exp(-0.5 * ((hours - 8.0) / 1.3) ** 2)
        + 0.35 * np.exp(-0.5 * ((hours - 13.0) / 2.0) ** 2)
        + 1.30 * np.exp(-0.5 * ((hours - 18.5) / 1.8) ** 2)
    )
    return shape / shape.mean()


def load_profile_forecast(
    history_local: pd.DatetimeIndex,
    history_w: np.ndarray,
    target_local: pd.DatetimeIndex,
    step_s: int,
    default_daily_kwh: float,
) -> np.ndarray:
    """Forecast W for each target step from history (both indexed in local time, same step).

    Same weekday and slot first, then the same slot any day, then the default shape.
    """
    slots = max(1, round(86400 / step_s))
    fallback = default_load_shape(slots) * default_daily_kwh * 1000.0 / 24.0
    t_slot = np.asarray((target_local.hour * 3600 + target_local.minute * 60 + target_local.second) // step_s)
    t_slot = np.clip(t_slot, 0, slots - 1)
    if len(history_local) == 0:
        return fallback[t_slot]
    h_slot = np.clip(
        np.asarray((history_local.hour * 3600 + history_local.minute * 60 + history_local.second) // step_s),
        0,
        slots - 1,
    )
    values = np.asarray(history_w, dtype=float)
    key = np.asarray(history_local.day_of_week) * slots + h_slot
    week_sum = np.bincount(key, weights=values, minlength=7 * slots)
    week_n = np.bincount(key, minlength=7 * slots)
    day_sum = np.bincount(h_slot, weights=values, minlength=slots)
    day_n = np.bincount(h_slot, minlength=slots)
    t_key = np.asarray(target_local.day_of_week) * slots + t_slot
    with np.errstate(invalid="ignore", divide="ignore"):
        by_week = week_sum[t_key] / week_n[t_key]
        by_day = day_sum[t_slot] / day_n[t_slot]
    out = np.where(week_n[t_key] > 0, by_week, np.where(day_n[t_slot] > 0, by_day, fallback[t_slot]))
    return np.asarray(out, dtype=float)


@functools.lru_cache(maxsize=16)
def _scenario_offsets(steps: int, slots: int, days: int) -> np.ndarray:
    """Target step ``j`` of scenario ``d`` takes the step ``(m + d)`` days back (see
    ``history_scenarios``), as an offset from the first target step; the same for every plan of
    one shape, so worked out once (read-only: the cache hands out the same array)."""
    j = np.arange(steps)
    m = (j + slots) // slots  # ceil((j + 1) / slots)
    out = j[None, :] - (m[None, :] + np.arange(days)[:, None]) * slots
    out.setflags(write=False)
    return out


def history_scenarios(
    past_keys: np.ndarray,
    past_load_w: np.ndarray,
    past_pv_w: np.ndarray,
    first_key: int,
    steps: int,
    step_s: int,
    days: int = SCENARIO_DAYS,
) -> tuple[np.ndarray, np.ndarray]:
    """Joint load and PV scenarios for ``steps`` steps from step ``first_key``: what each of the
    last ``days`` days did at the same time of day. Shape (scenarios, steps) each.

    Keys are step numbers since the epoch (``timestamp // step_s``), past ones strictly before
    ``first_key``. A target step ``j`` steps ahead takes, in scenario ``d``, the step
    ``(m + d)`` whole days earlier, where ``m`` is the fewest days that reach back before
    ``first_key`` (1 within the next day, 2 beyond it), so a scenario is a run of real days that
    ends with the most recent data. A scenario with any step missing from the history is left out;
    no complete scenario gives an empty (0, steps) pair and the caller plans on its point forecast.
    Using whole past days keeps what a mean throws away: a dull day is dull all day, and an
    evening's load comes with that day's PV.
    """
    slots = max(1, round(86400 / step_s))
    keys = np.asarray(past_keys, dtype=np.int64)
    if len(keys) == 0 or days <= 0:
        return np.zeros((0, steps)), np.zeros((0, steps))
    # Every scenario at once (one row per day back): the history step each target step takes.
    source = first_key + _scenario_offsets(steps, slots, days)
    at = np.searchsorted(keys, source)
    found = keys[np.minimum(at, len(keys) - 1)] == source
    whole = found.all(axis=1)
    if not whole.any():
        return np.zeros((0, steps)), np.zeros((0, steps))
    at = at[whole]
    load = np.asarray(past_load_w, dtype=float)[at]
    pv = np.asarray(past_pv_w, dtype=float)[at]
    return np.maximum(load, 0.0), np.maximum(pv, 0.0)
