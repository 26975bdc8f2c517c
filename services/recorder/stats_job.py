"""The periodic statistics job: read a day back from the store, compute, publish and store.

Yesterday is final and today is partial; both are recomputed every ``stats_interval_s`` (a
late spool replay can still change yesterday). Rows are keyed by day, so each recomputation
replaces the last one. Monthly sums and the payback figure are rebuilt from the stored days.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from shared import clock
from shared.config import OngridConfig
from shared.energy.battery import BatteryModel
from shared.energy.tariff import Tariff, tariff_from_config
from shared.messages import DailyStats, DispatcherModeName, utc_now
from shared.topics import Kind, Stream, TopicParts

from .backends import Reader, StoredPoint
from .points import to_rows
from .rows import Row, ns
from .stats import Site, daily_stats, day_bounds, day_frame, monthly, payback, sunrise

STEP_S = 60
MAX_GAP_S = 300
SEED_S = MAX_GAP_S  # read this much before midnight so the first buckets have a value


def battery_model(cfg: OngridConfig) -> BatteryModel:
    """The battery as the dispatcher plans it; a 10 kWh default when none is configured."""
    battery_cfg = cfg.battery(cfg.dispatcher.battery)
    if battery_cfg is None:
        return BatteryModel(capacity_wh=10_000.0, max_charge_w=3000.0, max_discharge_w=3000.0)
    return BatteryModel.from_config(battery_cfg, cfg.inverter(cfg.dispatcher.inverter))


def _values(points: list[StoredPoint], field: str) -> list[tuple[int, float]]:
    out = []
    for point in points:
        value = point.fields.get(field)
        if isinstance(value, int | float):
            out.append((point.ts_ns, float(value)))
    return out


def read_sources(reader: Reader, site: str, start_ns: int, end_ns: int) -> dict[str, list[tuple[int, float]]]:
    """Choose each flow's best source: a CT meter of that role, else the inverter's own reading."""
    where = {"site": site}
    inverter = reader.points("inverter", start_ns, end_ns, where)
    meters = reader.points("meter", start_ns, end_ns, where)
    battery = reader.points("battery", start_ns, end_ns, where)
    decisions = reader.points("decision", start_ns, end_ns, where)

    def meter(role: str) -> list[tuple[int, float]]:
        return _values([p for p in meters if p.tags.get("role") == role], "power_w")

    def pick(*candidates: list[tuple[int, float]]) -> list[tuple[int, float]]:
        return next((c for c in candidates if c), [])

    return {
        "grid_w": pick(meter("grid"), _values(inverter, "grid_power_w")),
        "pv_w": pick(meter("pv"), _values(inverter, "pv_power_w")),
        "load_w": pick(meter("load"), _values(inverter, "load_power_w")),
        "battery_w": pick(meter("battery"), _values(inverter, "battery_power_w"), _values(battery, "power_w")),
        "soc_pct": pick(_values(inverter, "battery_soc_pct"), _values(battery, "soc_pct")),
        "setpoint_w": _values(decisions, "setpoints_battery_power_w"),
        "goal_w": _values(decisions, "numbers_goal_w"),
        "planned_grid_w": _values(decisions, "numbers_planned_grid_w"),
        "charge_max_w": _values(decisions, "numbers_charge_max_w"),
    }


def mode_off_at(reader: Reader, site: str, when: datetime) -> bool:
    """Whether the dispatcher's last decision before ``when`` (within an hour) was in mode ``off``."""
    decisions = reader.points("decision", ns(when) - 3600 * 1_000_000_000, ns(when) + 1, {"site": site})
    return bool(decisions) and decisions[-1].tags.get("mode") == DispatcherModeName.OFF.value


def compute_day(
    cfg: OngridConfig, reader: Reader, tariff: Tariff, day: date, now: datetime, speed: float = 1.0
) -> DailyStats | None:
    """One day's statistics as of ``now``. ``speed``: simulated seconds per wall second of the clock
    the readings are stamped in (an accelerated demo): bridges poll in wall seconds, so a silence
    is missing data after ``MAX_GAP_S`` of *wall* time, that many times more of stamped time."""
    start, end = day_bounds(day, cfg.tariff.timezone)
    max_gap_s = int(MAX_GAP_S * max(1.0, speed))
    sources = read_sources(reader, cfg.site, ns(start) - max_gap_s * 1_000_000_000, ns(min(end, now)))
    if not any(t >= ns(start) for points in sources.values() for t, _ in points):
        return None  # only the seed readings from before midnight: no data for this day
    frame = day_frame(sources, start, end, STEP_S, max_gap_s)
    # Buckets after "now" are the future, not missing data.
    frame = frame[frame.index < now]
    site = Site(cfg.dispatcher.latitude, cfg.dispatcher.longitude, cfg.tariff.timezone)
    rise = sunrise(day, site)
    return daily_stats(
        day,
        frame,
        STEP_S,
        battery_model(cfg),
        tariff,
        rise,
        ts=min(end, now),
        standing_charge=cfg.tariff.standing_charge_per_day,
        mode_off_at_sunrise=rise is not None and rise < now and mode_off_at(reader, cfg.site, rise),
    )


def stored_days(reader: Reader, site: str, since: datetime, until: datetime) -> list[DailyStats]:
    """The daily rows back as ``DailyStats`` (the inverse of ``points._daily``)."""
    days = []
    for point in reader.points("daily_stats", ns(since), ns(until), {"site": site}):
        fields: dict[str, Any] = {k: v for k, v in point.fields.items() if k in DailyStats.model_fields}
        for split in ("export_by_cause_wh", "export_causes_wh"):
            fields[split] = {
                k.removeprefix(f"{split}_"): v for k, v in point.fields.items() if k.startswith(f"{split}_")
            }
        if "reached_sunrise" in fields:
            fields["reached_sunrise"] = bool(fields["reached_sunrise"])
        fields["ts"] = datetime.fromtimestamp(point.ts_ns / 1e9, UTC)
        try:
            days.append(DailyStats(**fields))
        except ValueError:
            continue  # a row written by an older schema; the next recomputation replaces it
    return days


def month_to_date_rows(cfg: OngridConfig, days: list[DailyStats], fresh: list[DailyStats]) -> list[Row]:
    """Nights to sunrise so far in the month, as of each freshly computed day (keyed like its daily
    row), so a dashboard over any range shows the month's count; ``monthly_stats`` sits on the 1st."""
    tags = {"site": cfg.site, "kind": Kind.STATS.value}
    rows = []
    for day in fresh:
        so_far = [d for d in days if d.day.strftime("%Y-%m") == day.day.strftime("%Y-%m") and d.day <= day.day]
        judged = [d for d in so_far if d.reached_sunrise is not None]
        fields = {"nights": len(judged), "nights_to_sunrise": sum(1 for d in judged if d.reached_sunrise)}
        rows.append(Row.make("month_to_date", tags, fields, ns(datetime.combine(day.day, time(0), tzinfo=UTC))))
    return rows


def summary_rows(cfg: OngridConfig, days: list[DailyStats], now: datetime) -> list[Row]:
    """Monthly sums (keyed by the month's first day) and the payback figure (keyed by now)."""
    rows = []
    tags = {"site": cfg.site, "kind": Kind.STATS.value}
    for month, figures in monthly(days).items():
        when = datetime.fromisoformat(f"{month}-01T00:00:00+00:00")
        sums = {k: v for k, v in figures.items() if isinstance(v, int | float)}
        rows.append(Row.make("monthly_stats", tags, sums, ns(when)))
    if cfg.recorder.battery_cost is not None and days:
        result = payback(days, cfg.recorder.battery_cost)
        band = result.get("payback_band_years") or [None, None]
        fields: dict[str, Any] = {
            "payback_years": result.get("payback_years"),
            "payback_low_years": band[0],
            "payback_high_years": band[1],
            "annual_savings": result.get("annual_savings"),
            "months": result.get("months"),
            "days": result.get("days"),
            "note": result.get("note"),
        }
        if any(v is not None for v in fields.values()):
            # Keyed like the latest day's row: "payback as of the data through that day".
            latest = max(d.day for d in days)
            rows.append(Row.make("payback", tags, fields, ns(datetime.combine(latest, time(0), tzinfo=UTC))))
    return rows


class StatsJob:
    def __init__(
        self,
        cfg: OngridConfig,
        reader: Reader,
        publish: Callable[[DailyStats], Any],
        store: Callable[[list[Row]], None],
    ) -> None:
        self.cfg = cfg
        self.reader = reader
        self.publish = publish
        self.store = store
        self.tariff = tariff_from_config(cfg.tariff, read_text=lambda path: Path(path).read_text())

    async def once(self, now: datetime | None = None) -> list[DailyStats]:
        # The process clock: wall time live, the simulator's against an accelerated demo, so the
        # days cut are the days the readings were stamped in.
        now = now or utc_now()
        speed = getattr(clock.current(), "speed", 1.0)
        today = now.astimezone(ZoneInfo(self.cfg.tariff.timezone)).date()
        results = []
        for day in (today - timedelta(days=1), today):
            stats = await asyncio.to_thread(compute_day, self.cfg, self.reader, self.tariff, day, now, speed)
            if stats is None:
                continue
            results.append(stats)
            self.store(to_rows(TopicParts(self.cfg.site, Kind.STATS, "daily", Stream.STATE), stats))
            await self.publish(stats)
        since = now - timedelta(days=self.cfg.recorder.stats_days)
        days = await asyncio.to_thread(stored_days, self.reader, self.cfg.site, since, now + timedelta(days=1))
        by_day = {d.day: d for d in days}
        by_day.update({d.day: d for d in results})  # the fresh ones may not be flushed yet
        ordered = sorted(by_day.values(), key=lambda d: d.day)
        self.store(summary_rows(self.cfg, ordered, now) + month_to_date_rows(self.cfg, ordered, results))
        return results
