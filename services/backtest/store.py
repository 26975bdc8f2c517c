"""``ongrid backtest --from-store``: the site's own recorded load and PV, read back from the recorder's
store (InfluxDB, or the embedded SQLite one) instead of a CSV.

Each flow comes from the source the recorder's statistics use (a CT meter of that role, else the
inverter's own reading: ``stats_job.read_sources``), on the statistics' one-minute grid where a
reading holds for at most five minutes (``stats.day_frame``), then averaged to ``STEP_S`` steps. A
silence of up to ``BRIDGE_S`` is bridged by a straight line (a restarted bridge, a broker blip);
a longer one stops the backtest with the flow, the time it started and how long it lasted, since a
replay across it would invent the house's consumption.

The recorder's package is imported here only, so the dispatcher service itself never loads it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from services.recorder.backends import BackendError, Reader, open_reader
from services.recorder.rows import ns
from services.recorder.stats import day_frame
from services.recorder.stats_job import MAX_GAP_S, SEED_S, read_sources
from services.recorder.stats_job import STEP_S as GRID_S
from shared.config import OngridConfig, load_config

from .data import DataError, Series

__all__ = ["BRIDGE_S", "STEP_S", "from_cli", "store_series"]

STEP_S = 300
BRIDGE_S = 900
FLOWS = {"load_w": "load", "pv_w": "PV"}


def _range(cfg: OngridConfig, first: date, last: date) -> tuple[datetime, datetime]:
    """Local midnight of ``first`` to local midnight after ``last`` (the site's ``tariff.timezone``)."""
    zone = ZoneInfo(cfg.tariff.timezone)
    start = datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def _gap(missing: pd.Series) -> tuple[pd.Timestamp, pd.Timedelta] | None:
    """The first run of missing steps longer than ``BRIDGE_S``: (start, length)."""
    runs = (missing != missing.shift()).cumsum()
    for _, run in missing[missing].groupby(runs[missing]):
        length = pd.Timedelta(seconds=len(run) * STEP_S)
        if length > pd.Timedelta(seconds=BRIDGE_S):
            return run.index[0], length
    return None


def _hours(length: pd.Timedelta) -> str:
    minutes = length.total_seconds() / 60.0
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60.0:.1f} h"


def store_series(cfg: OngridConfig, first: date, last: date, reader: Reader | None = None) -> Series:
    """Load and PV of ``cfg.site`` for the days ``first`` to ``last`` (inclusive, local), ``STEP_S`` apart."""
    if last < first:
        raise DataError(f"--end {last} is before --start {first}")
    start, end = _range(cfg, first, last)
    own = reader is None
    reader = reader or open_reader(cfg)
    where = f"the recorder's store ({reader.name}) for site {cfg.site!r}"
    try:
        sources = read_sources(reader, cfg.site, ns(start) - SEED_S * 1_000_000_000, ns(end))
    except BackendError as exc:
        raise DataError(f"cannot read {where}: {exc}") from None
    finally:
        if own:
            reader.close()
    for column, name in FLOWS.items():
        if not any(t >= ns(start) for t, _ in sources[column]):
            raise DataError(f"no {name} recorded in {where} from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    frame = day_frame({c: sources[c] for c in FLOWS}, start, end, GRID_S, MAX_GAP_S)
    steps = frame[list(FLOWS)].resample(f"{STEP_S}s", origin=start).mean()
    for column, name in FLOWS.items():
        gap = _gap(steps[column].isna())
        if gap is not None:
            at, length = gap
            zone = cfg.tariff.timezone
            raise DataError(
                f"{where}: no {name} ({column}) recorded from {at.tz_convert(zone):%Y-%m-%d %H:%M} {zone} for "
                f"{_hours(length)}; the backtest bridges silences up to {BRIDGE_S // 60} min. Choose --start/--end "
                "around it"
            )
        steps[column] = steps[column].interpolate(limit_direction="both")
    # A PV inverter reads a few watts below zero at night; a load is never negative.
    load = np.clip(steps["load_w"].to_numpy(dtype=float), 0.0, None)
    pv = np.clip(steps["pv_w"].to_numpy(dtype=float), 0.0, None)
    return Series(pd.DatetimeIndex(steps.index), load, pv, STEP_S)


def from_cli(config_path: Path, start: str | None, end: str | None) -> Series:
    """``--from-store --start DATE --end DATE`` as ``ongrid backtest`` gets them."""
    if start is None or end is None:
        raise DataError("--from-store needs --start DATE and --end DATE (YYYY-MM-DD, the site's days)")
    days = []
    for flag, value in (("--start", start), ("--end", end)):
        try:
            days.append(date.fromisoformat(value))
        except ValueError:
            raise DataError(f"{flag} {value!r} is not a date YYYY-MM-DD") from None
    return store_series(load_config(config_path), days[0], days[1])
