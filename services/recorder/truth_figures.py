"""The demo day as a new user watching it sees it: the careful-owner figures from the recorder's
store (``services.recorder.control_figures``) beside the same questions asked of the simulator's
ground truth (``sim_truth``, which the recorder stores during a demo), one figure per symptom of
issue 12 item 8:

* ``export_while_discharging``: the battery discharging (beyond ``SIGN_BAND_W``) while the house
  exports more than ``EXPORT_W`` (a deadband holding a discharge above the house's draw: "200 W
  against a 140-150 W load, 40-60 W to the grid all night"); minutes, and the battery's share of
  that export in Wh.
* ``charge_while_peak_import``: the battery charging while the house imports more than
  ``SIGN_BAND_W`` at the peak rate (a price above the day's cheapest) ("charging at 300 W while
  importing 110 W at the peak rate"); minutes and Wh imported.
* ``against_setpoint``: the battery moving against the dispatcher's setpoint in force (each side
  beyond ``SIGN_BAND_W``; "setpoint +3,000 W while the battery charged at -2,700 W"), the setpoint
  taken once it had ``SETTLE_S`` to act; minutes, split by whether the dispatcher was commanding
  the inverter or had handed it its own self-use (then the setpoint is only the zero-grid estimate).
* ``full_power_into_export``: the battery above ``FULL_W`` while the house exports more than
  ``BIG_EXPORT_W`` (a 3 kW load just ended and the battery stayed at 3 kW); minutes.
* ``deadband_held``: decisions where the deadband kept a discharge above the need or a charge
  above the surplus by more than half a write step.

Each truth sample counts for the time to the next one, at most ``MAX_SAMPLE_S`` (the simulator
publishes its truth once a wall second: a simulated minute at 60x).

``python -m services.recorder.control_figures --config var/demo/ongrid.yaml --day 2026-06-21 --truth``
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from shared.config import OngridConfig
from shared.energy.tariff import Tariff

from .backends import Reader
from .control_figures import PRICE_EPS, SIGN_BAND_W, setpoint_at_readings
from .rows import ns
from .stats import day_bounds

EXPORT_W = 40.0
FULL_W = 2500.0
BIG_EXPORT_W = 2000.0
MAX_SAMPLE_S = 120.0


@dataclass(frozen=True)
class TruthSample:
    """One ground-truth reading of the simulated house (bus convention: import +, discharge +)."""

    ts_ns: int
    grid_w: float
    battery_w: float
    load_w: float
    pv_w: float


@dataclass(frozen=True)
class SetpointPoint:
    ts_ns: int
    setpoint_w: float
    commanding: bool


def _durations_s(samples: Sequence[TruthSample], end_ns: int) -> np.ndarray:
    times = np.array([s.ts_ns for s in samples] + [end_ns], dtype="int64")
    return np.minimum(np.diff(times) / 1e9, MAX_SAMPLE_S)


def _worst(
    samples: Sequence[TruthSample], mask: np.ndarray, score: np.ndarray, zone: ZoneInfo
) -> dict[str, Any] | None:
    if not mask.any():
        return None
    k = int(np.argmax(np.where(mask, score, -np.inf)))
    s = samples[k]
    when = datetime.fromtimestamp(s.ts_ns / 1e9, UTC).astimezone(zone)
    return {
        "at": when.isoformat(timespec="seconds"),
        "battery_w": round(s.battery_w),
        "grid_w": round(s.grid_w),
        "load_w": round(s.load_w),
        "pv_w": round(s.pv_w),
    }


def truth_figures(
    samples: Sequence[TruthSample],
    end_ns: int,
    import_price: np.ndarray,
    setpoints: Sequence[SetpointPoint],
    zone: ZoneInfo,
) -> dict[str, dict[str, Any]]:
    """The four symptoms of the ground truth; ``import_price`` per sample, ``setpoints`` the
    decisions (any order)."""
    if not samples:
        return {}
    dt = _durations_s(samples, end_ns)
    grid = np.array([s.grid_w for s in samples])
    bat = np.array([s.battery_w for s in samples])
    price = np.asarray(import_price, dtype=float)
    peak = price > np.nanmin(price) + PRICE_EPS

    discharging_export = (bat > SIGN_BAND_W) & (grid < -EXPORT_W)
    battery_export = np.minimum(np.clip(bat, 0.0, None), np.clip(-grid, 0.0, None))
    charging_peak = (bat < -SIGN_BAND_W) & (grid > SIGN_BAND_W) & peak
    full_export = (bat > FULL_W) & (grid < -BIG_EXPORT_W)

    ordered = sorted(setpoints, key=lambda p: p.ts_ns)
    in_force = dict(setpoint_at_readings([(p.ts_ns, p.setpoint_w) for p in ordered], [(s.ts_ns, 0.0) for s in samples]))
    commanding_at = {}
    times = np.array([p.ts_ns for p in ordered], dtype="int64")
    for s in samples:
        k = int(np.searchsorted(times, s.ts_ns, side="right")) - 1
        if k >= 0:
            commanding_at[s.ts_ns] = ordered[k].commanding
    setpoint = np.array([in_force.get(s.ts_ns, np.nan) for s in samples])
    against = ((setpoint > SIGN_BAND_W) & (bat < -SIGN_BAND_W)) | ((setpoint < -SIGN_BAND_W) & (bat > SIGN_BAND_W))
    commanding = np.array([commanding_at.get(s.ts_ns, False) for s in samples], dtype=bool)

    def minutes(mask: np.ndarray) -> float:
        return round(float(dt[mask].sum()) / 60.0, 1)

    def wh(values: np.ndarray, mask: np.ndarray) -> float:
        return round(float((values * dt)[mask].sum()) / 3600.0, 1)

    night = np.array([s.pv_w <= 0.0 for s in samples], dtype=bool)
    return {
        "export_while_discharging": {
            "minutes": minutes(discharging_export),
            "battery_export_wh": wh(battery_export, discharging_export),
            "minutes_without_pv": minutes(discharging_export & night),
            "worst": _worst(samples, discharging_export, battery_export, zone),
        },
        "charge_while_peak_import": {
            "minutes": minutes(charging_peak),
            "import_wh": wh(np.clip(grid, 0.0, None), charging_peak),
            "worst": _worst(samples, charging_peak, np.minimum(grid, -bat), zone),
        },
        "against_setpoint": {
            "minutes": minutes(against),
            "minutes_commanding": minutes(against & commanding),
            "worst": _worst(samples, against, np.abs(bat - np.nan_to_num(setpoint)), zone),
        },
        "full_power_into_export": {
            "minutes": minutes(full_export),
            "worst": _worst(samples, full_export, -grid, zone),
        },
    }


def deadband_held(decisions: Sequence[tuple[str, float, float]], slack_w: float) -> dict[str, int]:
    """Decisions ``(reason, setpoint W, zero-grid W)`` where the deadband kept a discharge above
    the house's draw or a charge above the surplus by more than ``slack_w``."""
    above_need = above_surplus = 0
    for reason, setpoint, zero_grid in decisions:
        if reason != "deadband":
            continue
        if setpoint > max(zero_grid, 0.0) + slack_w:
            above_need += 1
        elif setpoint < min(zero_grid, 0.0) - slack_w:
            above_surplus += 1
    return {"discharge_above_need": above_need, "charge_above_surplus": above_surplus}


def _number(fields: dict[str, Any], name: str) -> float | None:
    value = fields.get(name)
    return float(value) if isinstance(value, int | float) else None


def day_truth_figures(cfg: OngridConfig, reader: Reader, tariff: Tariff, day: date) -> dict[str, Any]:
    """The truth figures and the deadband's holds for one local day (the tariff's time zone)."""
    start, end = day_bounds(day, cfg.tariff.timezone)
    where = {"site": cfg.site}
    samples = []
    for point in reader.points("sim_truth", ns(start), ns(end), where):
        values = [_number(point.fields, f) for f in ("grid_w", "battery_w", "load_w", "pv_w")]
        if any(v is None for v in values) or _number(point.fields, "speed") == 0.0:  # 0: the clock held
            continue
        grid, battery, load, pv = (float(v or 0.0) for v in values)
        samples.append(TruthSample(point.ts_ns, grid, battery, load, pv))
    setpoints = []
    held = []
    for point in reader.points("decision", ns(start), ns(end), where):
        setpoint = _number(point.fields, "setpoints_battery_power_w")
        if setpoint is None:
            continue
        setpoints.append(SetpointPoint(point.ts_ns, setpoint, bool(point.fields.get("commanding"))))
        zero_grid = _number(point.fields, "numbers_zero_grid_w")
        if zero_grid is not None:
            held.append((str(point.tags.get("reason", "")), setpoint, zero_grid))
    index = pd.DatetimeIndex([datetime.fromtimestamp(s.ts_ns / 1e9, UTC) for s in samples])
    import_price = tariff.prices(index, 1)[0] if samples else np.zeros(0)
    return {
        "truth": truth_figures(samples, ns(end), import_price, setpoints, ZoneInfo(cfg.tariff.timezone)),
        "truth_samples": len(samples),
        "deadband_held": deadband_held(held, cfg.dispatcher.quantum_w / 2),
    }
