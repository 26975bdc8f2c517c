"""How carefully the battery was run on one day, from recorded data: three figures a careful owner
would look at, each zero for a battery that does exactly what its plan and the house need.

* ``unplanned_battery_export_wh``: energy the battery sent to the grid that the plan did not ask
  for. In each bucket the battery's share of the export is ``min(discharge, export)``; the plan's
  own (``min(planned discharge, planned export)`` of the plan step in force) is taken off. This is
  what a deadband holding a discharge above the house's load, or a lagging setpoint after a load
  ended, costs.
* ``peak_import_wh``: energy imported at the peak rate (a bucket whose import price is above the
  day's cheapest) while the battery was above its reserve and could have covered it: the import
  up to the discharge the battery still had in hand (``max_discharge_w - battery_w``, so a battery
  charging while the house imports counts in full).
* ``opposite_sign_s``: time the battery moved against its setpoint (setpoint discharging while the
  battery charged, or the reverse), each side beyond ``SIGN_BAND_W``. From recorded data each
  battery reading is set against the setpoint in force when it was taken, once that setpoint had
  ``SETTLE_S`` to act (``setpoint_at_readings``): a reading from before a new setpoint says nothing
  about obeying it, and the inverter is polled less often than the dispatcher decides. While the
  dispatcher has handed the inverter its own self-use there is no setpoint to be against
  (``commanded_setpoints``).

``control_figures`` is pure: a day's bucket frame in (``stats.day_frame``: ``grid_w``,
``battery_w``, ``soc_pct``, ``setpoint_w``), figures out; ``day_control_figures`` reads that day
back from the store the way the daily statistics do (``stats_job.read_sources``) and adds the
recorded plan steps. Sign convention as on the bus: grid import ``+``, battery discharge ``+``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from shared.config import OngridConfig
from shared.energy import soc_limits
from shared.energy.battery import BatteryModel
from shared.energy.tariff import Tariff

from .backends import Reader, StoredPoint
from .rows import ns
from .stats import day_bounds, day_frame
from .stats_job import MAX_GAP_S, SEED_S, STEP_S, battery_model, read_sources

__all__ = [
    "SIGN_BAND_W",
    "ControlFigures",
    "commanded_setpoints",
    "control_figures",
    "day_control_figures",
    "figures_html",
    "planned_battery_export_w",
    "setpoint_at_readings",
]

# Below this a reading is the inverter idling or CT noise, not a direction.
SIGN_BAND_W = 50.0
# The inverter's moment to act on a new setpoint before its reading is held against it (s).
SETTLE_S = 10.0
PRICE_EPS = 1e-9


@dataclass(frozen=True)
class ControlFigures:
    unplanned_battery_export_wh: float
    peak_import_wh: float
    opposite_sign_s: float

    def as_dict(self) -> dict[str, float]:
        return {
            "unplanned_battery_export_wh": round(self.unplanned_battery_export_wh, 1),
            "peak_import_wh": round(self.peak_import_wh, 1),
            "opposite_sign_s": round(self.opposite_sign_s, 1),
        }


def setpoint_at_readings(
    setpoints: Sequence[tuple[int, float]], readings: Sequence[tuple[int, float]], settle_s: float = SETTLE_S
) -> list[tuple[int, float]]:
    """For each battery reading ``(ts ns, W)``, the setpoint in force when it was taken, if that
    setpoint had been in force for ``settle_s`` (a reading sooner after a change is left out: the
    inverter may still be on its way; so is one before the first setpoint)."""
    if not setpoints or not readings:
        return []
    changes: list[tuple[int, float]] = []  # when the setpoint took each new value (repeats are not changes)
    for t, v in sorted(setpoints):
        if not changes or not (v == changes[-1][1] or (math.isnan(v) and math.isnan(changes[-1][1]))):
            changes.append((t, v))
    times = np.array([t for t, _ in changes], dtype="int64")
    values = [v for _, v in changes]
    out = []
    for t, _ in readings:
        k = int(np.searchsorted(times, t, side="right")) - 1
        if k >= 0 and t - times[k] >= settle_s * 1e9:
            out.append((t, values[k]))
    return out


def commanded_setpoints(decisions: Sequence[StoredPoint]) -> list[tuple[int, float]]:
    """``(ts ns, W)`` of each decision's setpoint; NaN where the dispatcher had handed the inverter
    its own self-use (``commanding`` false): its ``battery_w`` is then only what the inverter is
    expected to do, from an inverter reading that may be minutes old (5 simulated minutes in the
    demo at 60x), so there is no setpoint for the battery to be against (as in
    ``services.devtools.sim_day``)."""
    out = []
    for point in decisions:
        value = point.fields.get("setpoints_battery_power_w")
        if isinstance(value, int | float):
            out.append((point.ts_ns, float(value) if point.fields.get("commanding", True) else math.nan))
    return out


def planned_battery_export_w(
    index: pd.DatetimeIndex, steps: Sequence[tuple[int, float, float]], step_s: int
) -> np.ndarray:
    """Per bucket of ``index``, the battery export the plan step in force asked for (W).

    ``steps``: ``(start ns, planned battery W, planned grid W)`` of the recorded plan steps (the
    newest plan's step where several plans covered a start); a bucket no step covers gets 0.
    """
    out = np.zeros(len(index))
    if not steps:
        return out
    ordered = sorted(steps)
    starts = np.array([s for s, _, _ in ordered], dtype="int64")
    asked = np.array([min(max(b, 0.0), max(-g, 0.0)) for _, b, g in ordered])
    at = np.asarray(index.as_unit("ns").asi8, dtype="int64")
    k = np.searchsorted(starts, at, side="right") - 1
    inside = (k >= 0) & (at < starts[np.clip(k, 0, None)] + step_s * 1_000_000_000)
    out[inside] = asked[k[inside]]
    return out


def control_figures(
    frame: pd.DataFrame,
    step_s: int,
    battery: BatteryModel,
    import_price: np.ndarray,
    planned_export_w: np.ndarray | None = None,
) -> ControlFigures:
    """The three figures for the buckets of ``frame`` (``step_s`` each); missing readings count 0."""
    dt_h = step_s / 3600.0
    grid = frame["grid_w"].to_numpy(dtype=float)
    bat = frame["battery_w"].to_numpy(dtype=float)
    soc = frame["soc_pct"].to_numpy(dtype=float)
    setpoint = frame["setpoint_w"].to_numpy(dtype=float)
    planned = np.zeros(len(frame)) if planned_export_w is None else planned_export_w

    from_battery = np.minimum(np.clip(bat, 0.0, None), np.clip(-grid, 0.0, None))
    unplanned = np.clip(np.nan_to_num(from_battery) - planned, 0.0, None)

    price = np.asarray(import_price, dtype=float)
    peak = price > np.nanmin(price) + PRICE_EPS if len(price) else np.zeros(0, dtype=bool)
    may_discharge = np.array([not np.isnan(s) and soc_limits.may_discharge(battery, s) for s in soc], dtype=bool)
    in_hand = np.clip(battery.max_discharge_w - np.nan_to_num(bat), 0.0, None)
    avoidable = np.minimum(np.clip(np.nan_to_num(grid), 0.0, None), in_hand)
    peak_import = np.where(peak & may_discharge, avoidable, 0.0)

    opposite = ((setpoint > SIGN_BAND_W) & (bat < -SIGN_BAND_W)) | ((setpoint < -SIGN_BAND_W) & (bat > SIGN_BAND_W))

    return ControlFigures(
        unplanned_battery_export_wh=float(unplanned.sum() * dt_h),
        peak_import_wh=float(peak_import.sum() * dt_h),
        opposite_sign_s=float(np.count_nonzero(opposite) * step_s),
    )


def day_control_figures(cfg: OngridConfig, reader: Reader, tariff: Tariff, day: date) -> ControlFigures | None:
    """The figures for one local day (the tariff's time zone) from the store; None without data."""
    start, end = day_bounds(day, cfg.tariff.timezone)
    sources = read_sources(reader, cfg.site, ns(start) - SEED_S * 1_000_000_000, ns(end))
    if not any(t >= ns(start) for points in sources.values() for t, _ in points):
        return None
    frame = day_frame(sources, start, end, STEP_S, MAX_GAP_S)
    step_s = cfg.dispatcher.step_minutes * 60
    steps = []
    for point in reader.points("plan_step", ns(start) - step_s * 1_000_000_000, ns(end), {"site": cfg.site}):
        b, g = point.fields.get("battery_power_w"), point.fields.get("grid_power_w")
        if isinstance(b, int | float) and isinstance(g, int | float):
            steps.append((point.ts_ns, float(b), float(g)))
    import_price, _ = tariff.prices(frame.index, STEP_S)
    planned = planned_battery_export_w(frame.index, steps, step_s)
    figures = control_figures(frame, STEP_S, battery_model(cfg), import_price, planned)
    # Opposite signs from the readings themselves, each against a setpoint that had time to act.
    readings = sorted(sources["battery_w"])
    decisions = reader.points("decision", ns(start) - SEED_S * 1_000_000_000, ns(end), {"site": cfg.site})
    in_force = dict(setpoint_at_readings(commanded_setpoints(decisions), readings))
    opposite = 0.0
    for (t, w), (t_next, _) in zip(readings, [*readings[1:], (ns(end), 0.0)], strict=True):
        setpoint = in_force.get(t)
        if setpoint is not None and ns(start) <= t < ns(end) and _against(setpoint, w):
            opposite += min(t_next - t, MAX_GAP_S * 1_000_000_000) / 1e9
    return replace(figures, opposite_sign_s=opposite)


def _against(setpoint_w: float, battery_w: float) -> bool:
    return (setpoint_w > SIGN_BAND_W and battery_w < -SIGN_BAND_W) or (
        setpoint_w < -SIGN_BAND_W and battery_w > SIGN_BAND_W
    )


def figures_html(cfg: OngridConfig, reader: Reader, start: datetime, end: datetime) -> str:
    """The report's table: the three figures for each local day from ``start`` to ``end``."""
    from shared.energy.tariff import TariffError, tariff_from_config

    zone = ZoneInfo(cfg.tariff.timezone)
    try:
        tariff = tariff_from_config(cfg.tariff, read_text=lambda path: Path(path).read_text())
    except (TariffError, OSError) as exc:
        return f"<h2>Careful-owner figures</h2><p>Not computed: {html.escape(str(exc))}</p>"
    rows = []
    day = start.astimezone(zone).date()
    while datetime.combine(day, time(0), tzinfo=zone) < end:
        figures = day_control_figures(cfg, reader, tariff, day)
        if figures is not None:
            rows.append(
                f"<tr><td>{day}</td><td>{figures.unplanned_battery_export_wh:.0f} Wh</td>"
                f"<td>{figures.peak_import_wh:.0f} Wh</td><td>{figures.opposite_sign_s / 60:.1f} min</td></tr>"
            )
        day += timedelta(days=1)
    if not rows:
        return "<h2>Careful-owner figures</h2><p>No day with data in this range.</p>"
    return (
        "<h2>Careful-owner figures</h2><p>Each is zero for a battery that does exactly what its plan and "
        "the house need (docs/dispatcher.md).</p><table><tr><th>day</th><th>battery energy exported "
        "unplanned</th><th>peak-rate import above the reserve</th><th>setpoint and battery opposite</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m services.recorder.control_figures --config FILE --day YYYY-MM-DD``: JSON per day."""
    import argparse
    import json

    from shared.config import ConfigError, load_config
    from shared.energy.tariff import TariffError, tariff_from_config

    from .backends import open_reader

    parser = argparse.ArgumentParser(prog="python -m services.recorder.control_figures", description=main.__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--day", action="append", required=True, help="local day YYYY-MM-DD (repeatable)")
    parser.add_argument(
        "--truth", action="store_true", help="also the simulator's ground truth (a demo's store): truth_figures"
    )
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        tariff = tariff_from_config(cfg.tariff)
        days = [date.fromisoformat(d) for d in args.day]
    except (ConfigError, TariffError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    reader = open_reader(cfg)
    out: dict[str, Any] = {}
    for day in days:
        figures = day_control_figures(cfg, reader, tariff, day)
        out[day.isoformat()] = None if figures is None else figures.as_dict()
        if args.truth:
            from .truth_figures import day_truth_figures

            out[day.isoformat()] = {"store": out[day.isoformat()], **day_truth_figures(cfg, reader, tariff, day)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
