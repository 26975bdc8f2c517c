"""Pure: the planner's inputs as the live service sees them (prices, forecasts, SoC) at one moment.

* Steps start at the step boundary at or before ``now`` (the step in force is step 0).
* PV: the configured array's clear-sky power times the clearness of the last 24 h of actuals
  (``core.forecast.clearness``), or, with ``dispatcher.pv_forecast: external``, the latest
  ``Forecast`` on the PV forecast topic where it covers a step (clear-sky x clearness elsewhere).
* Load: an external load ``Forecast`` where one covers a step; else the history's same weekday and
  time of day (``core.forecast.load_profile_forecast``), the default shape before any history.
* Scenarios: once the history holds a whole day before the plan, the last days' joint load and
  PV at the same hours (``core.forecast.history_scenarios``, the backtest's planner uses the
  same), external forecasts laid over them; the point forecasts are then the scenarios' mean.
* Heat pumps (``loads[]`` of kind ``heat_pump``): the history's load less each one's recorded draw
  is the base load forecast as above; each one's expected draw (``core.heat_pump.expected_draw_w``:
  its run window, duty and budget) is added to it and to every scenario. An external load forecast
  is taken as the whole house's: nothing is added where it covers a step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from shared.config import OngridConfig
from shared.config.loads import HeatPumpLoad
from shared.energy.battery import BatteryModel
from shared.energy.tariff import Tariff
from shared.messages import Forecast

from .core.forecast import PvArray, clear_sky_pv_w, clearness, history_scenarios, load_profile_forecast
from .core.heat_pump import expected_draw_w
from .core.heat_pump_plan import HeatPumpDraw
from .core.planner import PlanInputs, Schedule
from .core.replan import forecast_error_pct
from .history import History

__all__ = [
    "Forecasts",
    "HeatPumpPast",
    "build_inputs",
    "external_values",
    "forecasts",
    "heat_pump_draw",
    "plan_error_pct",
    "pv_array",
    "step_starts",
]


def pv_array(cfg: OngridConfig) -> PvArray:
    d = cfg.dispatcher
    return PvArray(d.pv_kwp, d.pv_tilt_deg, d.pv_azimuth_deg, d.latitude, d.longitude)


def step_starts(now: datetime, step_s: int, steps: int) -> pd.DatetimeIndex:
    first = int(now.timestamp() // step_s) * step_s
    return pd.date_range(datetime.fromtimestamp(first, UTC), periods=steps, freq=f"{step_s}s")


def external_values(forecast: Forecast | None, starts: pd.DatetimeIndex, step_s: int) -> np.ndarray:
    """Mean W per step from a ``Forecast`` (NaN where it says nothing about the step).

    A forecast at a different step is sampled at each step's middle: the point whose period holds
    that instant gives the value.
    """
    out = np.full(len(starts), np.nan)
    if forecast is None or not forecast.points:
        return out
    points = sorted(forecast.points, key=lambda p: p.start)
    begins = np.array([p.start.timestamp() for p in points])
    values = np.array([p.power_w for p in points])
    middles = np.asarray(starts.as_unit("s").asi8, dtype=float) + step_s / 2
    idx = np.searchsorted(begins, middles, side="right") - 1
    inside = (idx >= 0) & (middles < begins[np.clip(idx, 0, None)] + forecast.step_s)
    out[inside] = values[idx[inside]]
    return out


@dataclass(frozen=True)
class HeatPumpPast:
    """One heat pump's recorded draw (a ``History`` of draw and switched-on share, see
    ``History.add_draw``), the battery energy it used in the budget period in force and whether
    the battery is feeding it now."""

    history: History
    used_wh: float = 0.0
    feeding: bool = False  # ``Budget.feeding``: the battery fed it at the dispatcher's last call


def heat_pump_draw(
    cfg: OngridConfig,
    heat_pumps: Mapping[str, HeatPumpPast],
    past: pd.DatetimeIndex,
    starts: pd.DatetimeIndex,
    now: datetime,
) -> tuple[np.ndarray, tuple[HeatPumpDraw, ...]]:
    """(recorded draw of every heat pump on the house history's steps ``past``, summed over the
    heat pumps, W; each one's expected draw over ``starts``)."""
    step_s = cfg.dispatcher.step_minutes * 60
    recorded = np.zeros(len(past))
    expected: list[HeatPumpDraw] = []
    for load in cfg.loads:
        if not isinstance(load, HeatPumpLoad):
            continue
        hp = heat_pumps.get(load.id, HeatPumpPast(History(step_s)))
        h_starts, draw, on = hp.history.complete(now)
        if len(h_starts):
            recorded += pd.Series(draw, index=h_starts).reindex(past, fill_value=0.0).to_numpy()
        each = expected_draw_w(load, starts, step_s, cfg.tariff.timezone, h_starts, draw, on, hp.used_wh)
        expected.append(HeatPumpDraw(load, each, hp.used_wh, hp.feeding))
    return recorded, tuple(expected)


@dataclass(frozen=True)
class Forecasts:
    pv_w: np.ndarray
    load_w: np.ndarray
    clearness: float
    pv_source: str
    load_source: str
    # The last days' joint load and PV at the same hours (``core.forecast.history_scenarios``),
    # external forecasts laid over them where given; empty until a whole day of history exists.
    load_scenarios_w: np.ndarray | None = None
    pv_scenarios_w: np.ndarray | None = None
    # The heat pumps' expected draw per step, included in ``load_w`` and the load scenarios.
    heat_pump_w: np.ndarray | None = None
    # Each heat pump's share of it (``core.heat_pump_plan.plan_with_heat_pumps`` takes these).
    heat_pumps: tuple[HeatPumpDraw, ...] = ()


def forecasts(
    cfg: OngridConfig,
    history: History,
    starts: pd.DatetimeIndex,
    now: datetime,
    pv_external: Forecast | None = None,
    load_external: Forecast | None = None,
    heat_pumps: Mapping[str, HeatPumpPast] | None = None,
) -> Forecasts:
    d = cfg.dispatcher
    step_s = d.step_minutes * 60
    array = pv_array(cfg)
    past, past_load, past_pv = history.complete(now)
    recorded_hp, each_hp = heat_pump_draw(cfg, heat_pumps or {}, past, starts, now)
    hp_w = sum((hp.draw_w for hp in each_hp), np.zeros(len(starts)))
    # The base load: what the house drew less the heat pumps, whose draw is planned on its own.
    past_load = np.maximum(past_load - recorded_hp, 0.0)
    recent = past >= pd.Timestamp(now) - pd.Timedelta(hours=24)
    k = clearness(past_pv[recent], clear_sky_pv_w(array, past[recent], step_s)) if recent.any() else 0.6
    pv = clear_sky_pv_w(array, starts, step_s) * k
    pv_source = "clear_sky"
    if d.pv_forecast == "external":
        given = external_values(pv_external, starts, step_s)
        if np.isfinite(given).any():
            pv = np.where(np.isfinite(given), given, pv)
            pv_source = "external" if np.isfinite(given).all() else "external+clear_sky"
    tz = cfg.tariff.timezone
    load = load_profile_forecast(
        past.tz_convert(tz), past_load, starts.tz_convert(tz), step_s, d.default_daily_load_kwh
    )
    load_source = "history" if len(past) else "default"
    given = external_values(load_external, starts, step_s)
    # An external load forecast is the whole house's; elsewhere the heat pumps are added.
    covered = np.isfinite(given)
    hp_w = np.where(covered, 0.0, hp_w)
    each_hp = tuple(replace(hp, draw_w=np.where(covered, 0.0, hp.draw_w)) for hp in each_hp)
    load = load + hp_w
    if np.isfinite(given).any():
        load = np.where(np.isfinite(given), given, load)
        load_source = "external" if np.isfinite(given).all() else f"external+{load_source}"
    if hp_w.any():
        load_source += "+heat_pump"
    keys = np.asarray(past.as_unit("s").asi8, dtype=np.int64) // step_s
    first_key = int(starts[0].timestamp()) // step_s
    load_s, pv_s = history_scenarios(keys, past_load, past_pv, first_key, len(starts), step_s)
    if len(load_s) == 0:
        return Forecasts(
            np.maximum(pv, 0.0), np.maximum(load, 0.0), k, pv_source, load_source, heat_pump_w=hp_w, heat_pumps=each_hp
        )
    # A forecast someone publishes knows more than last week did: it replaces every scenario's
    # value where it covers a step.
    pv_given = external_values(pv_external, starts, step_s) if d.pv_forecast == "external" else None
    if pv_given is not None:
        pv_s = np.where(np.isfinite(pv_given), pv_given, pv_s)
    load_given = external_values(load_external, starts, step_s)
    load_s = np.where(np.isfinite(load_given), load_given, load_s + hp_w)
    load_s, pv_s = np.maximum(load_s, 0.0), np.maximum(pv_s, 0.0)
    return Forecasts(
        pv_s.mean(axis=0),
        load_s.mean(axis=0),
        k,
        pv_source,
        load_source,
        load_s,
        pv_s,
        heat_pump_w=hp_w,
        heat_pumps=each_hp,
    )


def build_inputs(
    cfg: OngridConfig,
    battery: BatteryModel,
    tariff: Tariff,
    history: History,
    now: datetime,
    soc_pct: float,
    battery_now_w: float,
    pv_external: Forecast | None = None,
    load_external: Forecast | None = None,
    heat_pumps: Mapping[str, HeatPumpPast] | None = None,
) -> tuple[PlanInputs, Forecasts]:
    d = cfg.dispatcher
    step_s = d.step_minutes * 60
    steps = d.horizon_hours * 3600 // step_s
    starts = step_starts(now, step_s, steps)
    fc = forecasts(cfg, history, starts, now, pv_external, load_external, heat_pumps)
    imp, exp = tariff.prices(starts, step_s)
    inputs = PlanInputs(
        start=starts[0].to_pydatetime(),
        step_s=step_s,
        soc_pct=min(100.0, max(0.0, soc_pct)),
        import_price=imp,
        export_price=exp,
        pv_w=fc.pv_w,
        load_w=fc.load_w,
        battery=battery,
        switch_cost=d.switch_cost_per_change,
        cycle_cost_per_kwh=d.cycle_cost_per_kwh,
        terminal_value_factor=d.terminal_value_factor,
        export_limit_w=d.export_limit_w,
        import_limit_w=d.import_limit_w,
        battery_power_now_w=battery_now_w,
        battery_may_export=d.battery_may_export,
        quantum_w=d.quantum_w,
        load_scenarios_w=fc.load_scenarios_w,
        pv_scenarios_w=fc.pv_scenarios_w,
    )
    return inputs, fc


def plan_error_pct(schedule: Schedule, history: History, now: datetime, window: timedelta = timedelta(hours=2)) -> (
    float | None
):
    """Error of the plan's net-load forecast (load - PV) over the completed steps since it was made
    (at most ``window``), against what the history recorded; None before a step has completed."""
    starts, load, pv = history.complete(now)
    if len(starts) == 0 or history.step_s != schedule.step_s:
        return None
    since = max(pd.Timestamp(schedule.start), pd.Timestamp(now) - pd.Timedelta(window))
    forecast_wh = actual_wh = 0.0
    used = 0
    dt_h = schedule.step_s / 3600.0
    for start, actual_load, actual_pv in zip(starts, load, pv, strict=True):
        if start < since:
            continue
        k = schedule.index_at(start.to_pydatetime())
        if k is None:
            continue
        forecast_wh += (float(schedule.load_w[k]) - float(schedule.pv_w[k])) * dt_h
        actual_wh += (actual_load - actual_pv) * dt_h
        used += 1
    if used == 0:
        return None
    return forecast_error_pct(forecast_wh, actual_wh)
