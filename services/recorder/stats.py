"""Daily and monthly statistics from recorded readings. Pure: arrays in, figures out.

Where the backtest computes the same figure, the shared code in ``shared.energy`` is used rather
than a second copy: the tariff's ``Tariff.prices``, the export causes (``accounting.export_causes``),
the night rule (``accounting.night_made``), self sufficiency (``PolicyResult.self_sufficiency_pct``)
and the payback band (``savings.payback``).

Energies are integrated over a fixed grid of ``step_s`` buckets: each source's readings are
averaged per bucket, and a bucket with no reading carries the previous value for at most
``max_gap_s`` (a bridge polls every 5-10 s; a longer silence is missing data, not a flat line).
Sign convention as on the bus: grid import +, battery discharge +, PV +, load +.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pvlib

from shared.energy import soc_limits
from shared.energy.accounting import ExportStep, PolicyResult, night_made
from shared.energy.battery import BatteryModel
from shared.energy.savings import payback as backtest_payback
from shared.energy.tariff import Tariff
from shared.messages import DailyStats

# Flows and SoC, and what the dispatcher decided: its setpoint, the goal before dwell, ramp and
# deadband shaped it, the plan's grid for the step, and how fast the battery could charge.
COLUMNS = (
    "grid_w",
    "pv_w",
    "load_w",
    "battery_w",
    "soc_pct",
    "setpoint_w",
    "goal_w",
    "planned_grid_w",
    "charge_max_w",
)
# Below this much charge in a day a round-trip efficiency is noise, not a figure.
MIN_RTE_THROUGHPUT = 0.05


@dataclass(frozen=True)
class Site:
    latitude: float
    longitude: float
    timezone: str


def day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """Local midnight to local midnight, in UTC (23 or 25 hours on DST days)."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def sunrise(day: date, site: Site) -> datetime | None:
    """Sunrise at the site on ``day`` (local date), UTC; ``None`` in polar day or night."""
    noon = pd.DatetimeIndex([datetime.combine(day, time(12), tzinfo=ZoneInfo(site.timezone))])
    table = pvlib.solarposition.sun_rise_set_transit_spa(noon, site.latitude, site.longitude)
    value = table["sunrise"].iloc[0]
    if pd.isna(value):
        return None
    return pd.Timestamp(value).tz_convert(UTC).round("s").to_pydatetime()


def day_frame(
    sources: Mapping[str, Sequence[tuple[int, float]]],
    start: datetime,
    end: datetime,
    step_s: int = 60,
    max_gap_s: int = 300,
) -> pd.DataFrame:
    """Readings ``{column: [(ts_ns, value)]}`` on a bucket grid ``[start, end)``; NaN where missing.

    Readings from up to ``max_gap_s`` before ``start`` seed the first buckets.
    """
    index = pd.date_range(start, end, freq=f"{step_s}s", inclusive="left")
    frame = pd.DataFrame(index=index, columns=list(COLUMNS), dtype=float)
    limit = max(0, max_gap_s // step_s)
    for column in COLUMNS:
        points = sources.get(column) or ()
        if not points:
            continue
        times = pd.to_datetime(np.array([t for t, _ in points], dtype="int64"), unit="ns", utc=True)
        series = pd.Series(np.array([v for _, v in points], dtype=float), index=times).sort_index()
        binned = series.groupby(series.index.floor(f"{step_s}s")).mean()
        full = binned.reindex(binned.index.union(index)).ffill(limit=limit)
        frame[column] = full.reindex(index)
    return frame


def _sum_wh(values: np.ndarray, dt_h: float) -> float:
    return float(np.nansum(values) * dt_h)


def discharge_stop_pct(battery: BatteryModel, mode_off: bool = False) -> float:
    """Where the battery stops discharging overnight: the dispatcher stops at the reserve; in mode
    ``off`` the inverter runs on its own down to the floor."""
    return soc_limits.discharge_stops_at_pct(battery, mode_off=mode_off)


def peak_window(import_price: np.ndarray) -> np.ndarray | None:
    """Buckets in the day's peak: import price in the upper half of the day's range (a two-rate
    tariff's peak hours; an Agile day's dearer half). ``None`` on a day with one price."""
    if not len(import_price):
        return None
    low, high = float(np.min(import_price)), float(np.max(import_price))
    if high - low < 1e-9:
        return None
    return np.asarray(import_price >= (low + high) / 2.0)


def daily_stats(
    day: date,
    frame: pd.DataFrame,
    step_s: int,
    battery: BatteryModel,
    tariff: Tariff,
    sunrise_at: datetime | None,
    *,
    ts: datetime,
    standing_charge: float = 0.0,
    mode_off_at_sunrise: bool = False,
) -> DailyStats:
    """One day's figures from its bucket frame (see ``day_frame``); ``ts`` is the period's end.

    ``mode_off_at_sunrise``: the dispatcher was in mode ``off`` at first light, so the night is
    judged against the floor the inverter stops at, not the reserve.
    """
    dt_h = step_s / 3600.0
    grid = frame["grid_w"].to_numpy(dtype=float)
    pv = frame["pv_w"].to_numpy(dtype=float)
    load = frame["load_w"].to_numpy(dtype=float)
    bat = frame["battery_w"].to_numpy(dtype=float)
    soc = frame["soc_pct"].to_numpy(dtype=float)
    setpoint = frame["setpoint_w"].to_numpy(dtype=float)

    imp = np.where(grid > 0, grid, 0.0)
    exp = np.where(grid < 0, -grid, 0.0)
    import_wh, export_wh = _sum_wh(imp, dt_h), _sum_wh(exp, dt_h)
    pv_wh = _sum_wh(np.clip(pv, 0.0, None), dt_h)
    load_wh = _sum_wh(np.clip(load, 0.0, None), dt_h)
    charge_wh = _sum_wh(np.clip(-bat, 0.0, None), dt_h)
    discharge_wh = _sum_wh(np.clip(bat, 0.0, None), dt_h)

    whole = ~(np.isnan(grid) | np.isnan(pv) | np.isnan(load) | np.isnan(bat))
    residual = (load - pv - grid - bat)[whole]
    residual_wh = float(residual.sum() * dt_h) if whole.any() else None

    figures = PolicyResult("actual", load_kwh=load_wh / 1000.0, import_kwh=import_wh / 1000.0)
    self_sufficiency = figures.self_sufficiency_pct if load_wh > 0 else None

    valid_soc = soc[~np.isnan(soc)]
    rte = None
    if len(valid_soc) >= 2 and charge_wh >= MIN_RTE_THROUGHPUT * battery.capacity_wh:
        stored = (valid_soc[-1] - valid_soc[0]) / 100.0 * battery.capacity_wh
        into = charge_wh - stored
        if into > 0:
            rte = round(100.0 * discharge_wh / into, 2)

    soc_at_sunrise, reached, stop_pct = None, None, None
    if sunrise_at is not None:
        after = frame.index >= pd.Timestamp(sunrise_at)
        if after.any():
            first = soc[after][:15]  # the first quarter hour after sunrise
            first = first[~np.isnan(first)]
            if len(first):
                soc_at_sunrise = float(first[0])
                stop_pct = discharge_stop_pct(battery, mode_off_at_sunrise)
                reached = night_made(battery, soc_at_sunrise, mode_off=mode_off_at_sunrise)

    causes = PolicyResult("actual")
    goal, planned_grid, charge_max = (_column(frame, c) for c in ("goal_w", "planned_grid_w", "charge_max_w"))
    for k in range(len(frame)):
        step = ExportStep(
            exp[k] * dt_h / 1000.0,
            dt_h,
            0.0 if np.isnan(bat[k]) else float(bat[k]),
            battery.wh(soc[k]) if not np.isnan(soc[k]) else 0.0,
            # The goal before smoothing; an older dispatcher's decisions carry only the setpoint.
            goal_w=_known(goal[k]) if not np.isnan(goal[k]) else _known(setpoint[k]),
            planned_grid_w=_known(planned_grid[k]),
            charge_max_w=_known(charge_max[k]),
            import_w=float(imp[k]),
        )
        causes.track_export(str(day), step, battery)
    causes.settle_exports()
    export_causes = {k: round(v * 1000.0, 3) for k, v in causes.export_causes_kwh.items() if k != "no_battery"}
    by_cause = {k: round(v * 1000.0, 3) for k, v in causes.export_by_cause_kwh.items() if k != "no_battery"}

    cost = cost_without = peak_discharge = None
    if len(frame):
        import_price, export_price = tariff.prices(frame.index, step_s)
        peak = peak_window(import_price)
        if peak is not None and not np.isnan(bat).all():
            peak_discharge = round(_sum_wh(np.clip(bat, 0.0, None)[peak], dt_h), 3)
        with_battery = (imp * import_price - exp * export_price) * dt_h / 1000.0
        counterfactual = grid + np.nan_to_num(bat)  # no battery: the grid covers what it did
        cf_imp = np.where(counterfactual > 0, counterfactual, 0.0)
        cf_exp = np.where(counterfactual < 0, -counterfactual, 0.0)
        without = (cf_imp * import_price - cf_exp * export_price) * dt_h / 1000.0
        if not np.isnan(grid).all():
            cost = round(float(np.nansum(with_battery)) + standing_charge, 4)
            cost_without = round(float(np.nansum(without)) + standing_charge, 4)

    return DailyStats(
        ts=ts,
        day=day,
        pv_wh=round(pv_wh, 3),
        load_wh=round(load_wh, 3),
        import_wh=round(import_wh, 3),
        export_wh=round(export_wh, 3),
        battery_charge_wh=round(charge_wh, 3),
        battery_discharge_wh=round(discharge_wh, 3),
        self_sufficiency_pct=None if self_sufficiency is None else round(min(100.0, self_sufficiency), 2),
        equivalent_cycles=round(discharge_wh / battery.capacity_wh, 4),
        round_trip_efficiency_pct=rte,
        reached_sunrise=reached,
        soc_at_sunrise_pct=None if soc_at_sunrise is None else round(min(100.0, max(0.0, soc_at_sunrise)), 2),
        discharge_stop_pct=stop_pct,
        soc_min_pct=_pct(valid_soc.min()) if len(valid_soc) else None,
        soc_max_pct=_pct(valid_soc.max()) if len(valid_soc) else None,
        peak_discharge_wh=peak_discharge,
        export_by_cause_wh=by_cause,
        export_causes_wh=export_causes,
        balance_residual_wh=None if residual_wh is None else round(residual_wh, 3),
        cost=cost,
        cost_without_battery=cost_without,
        savings=None if cost is None or cost_without is None else round(cost_without - cost, 4),
        samples=int(whole.sum()),
    )


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A column's values; all missing where the frame has no such column."""
    if name not in frame:
        return np.full(len(frame), np.nan)
    return frame[name].to_numpy(dtype=float)


def _known(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _pct(value: float) -> float:
    return round(min(100.0, max(0.0, float(value))), 2)


MONTH_SUMS = (
    "pv_wh",
    "load_wh",
    "import_wh",
    "export_wh",
    "battery_charge_wh",
    "battery_discharge_wh",
    "equivalent_cycles",
    "balance_residual_wh",
    "cost",
    "cost_without_battery",
    "savings",
    "peak_discharge_wh",
)


def monthly(days: Iterable[DailyStats]) -> dict[str, dict[str, Any]]:
    """Per month (``YYYY-MM``): sums of the daily figures, self sufficiency from the sums, the
    month's lowest and highest SoC, and nights: ``nights`` judged, ``nights_to_sunrise`` made."""
    out: dict[str, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(MONTH_SUMS, 0.0))
    for stats in days:
        month = out[stats.day.strftime("%Y-%m")]
        for key in MONTH_SUMS:
            month[key] += getattr(stats, key) or 0.0
        if stats.soc_min_pct is not None:
            month["soc_min_pct"] = min(month.get("soc_min_pct", 100.0), stats.soc_min_pct)
        if stats.soc_max_pct is not None:
            month["soc_max_pct"] = max(month.get("soc_max_pct", 0.0), stats.soc_max_pct)
        for cause, wh in stats.export_by_cause_wh.items():
            month[f"export_by_cause_wh_{cause}"] = month.get(f"export_by_cause_wh_{cause}", 0.0) + wh
        for cause, wh in stats.export_causes_wh.items():
            month[f"export_causes_wh_{cause}"] = month.get(f"export_causes_wh_{cause}", 0.0) + wh
        month["days"] = month.get("days", 0) + 1
        if stats.reached_sunrise is not None:
            month["nights"] = month.get("nights", 0) + 1
            month["nights_to_sunrise"] = month.get("nights_to_sunrise", 0) + int(stats.reached_sunrise)
    for month in out.values():
        load = month["load_wh"]
        month["self_sufficiency_pct"] = (
            round(max(0.0, min(100.0, 100.0 * (1 - month["import_wh"] / load))), 2) if load > 0 else None
        )
    return dict(out)


def payback(days: Sequence[DailyStats], battery_cost: float, min_samples: int = 1) -> dict[str, Any]:
    """Years to pay back ``battery_cost``, with the backtest's band from the spread of monthly savings.

    Only days with a cost and a counterfactual count. Under two months: a figure and no band,
    and the note says so (a payback "from 2 hours of data" is not a figure).
    """
    none, actual = PolicyResult("none"), PolicyResult("actual")
    for stats in days:
        if stats.cost is None or stats.cost_without_battery is None or stats.samples < min_samples:
            continue
        month = stats.day.strftime("%Y-%m")
        none.monthly_cost[month] += stats.cost_without_battery
        actual.monthly_cost[month] += stats.cost
        none.monthly_days[month] += 1.0
        actual.monthly_days[month] += 1.0
    result = backtest_payback(none, actual, battery_cost)
    result["days"] = int(sum(actual.monthly_days.values()))
    return result
