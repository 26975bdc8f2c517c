"""Import and export prices per planning step, from the tariff config.

Pure: a CSV tariff is parsed from text handed in by the caller (``tariff_from_config`` takes a
``read_text`` function), so the core never opens a file itself.

Prices are per kWh. A step that straddles a tariff boundary (a 60-minute step against a window that
starts at 00:30) gets the time-weighted mean of the prices in force during it, sampled each minute
in the configured time zone, so DST days and windows across midnight need no special case.
"""

from __future__ import annotations

import bisect
import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from shared.config.tariff import Csv, Flat, TariffConfig, TwoRate

__all__ = ["PriceSeries", "Tariff", "TariffError", "parse_price_csv", "tariff_from_config"]


class TariffError(ValueError):
    """A tariff that cannot price a step: bad CSV row, or a step outside the CSV's coverage."""


@dataclass(frozen=True)
class PriceSeries:
    """Prices from a file: ``starts[k]`` (UTC) begins a period that ends at ``starts[k+1]``.

    The last period lasts as long as the one before it (the file's own step).
    """

    starts: tuple[datetime, ...]
    prices: tuple[float, ...]
    source: str = "csv"

    def __post_init__(self) -> None:
        if len(self.starts) != len(self.prices) or not self.starts:
            raise TariffError(f"{self.source}: needs at least one row of start,price_per_kwh")

    @property
    def end(self) -> datetime:
        last = self.starts[-1] - self.starts[-2] if len(self.starts) > 1 else timedelta(minutes=30)
        return self.starts[-1] + last

    def at(self, when: datetime) -> float:
        if when < self.starts[0] or when >= self.end:
            raise TariffError(
                f"{self.source}: no price for {when.isoformat()} "
                f"(file covers {self.starts[0].isoformat()} to {self.end.isoformat()})"
            )
        return self.prices[bisect.bisect_right(self.starts, when) - 1]


def parse_price_csv(text: str, source: str = "csv") -> PriceSeries:
    """Parse ``start,price_per_kwh`` rows (ISO start with offset; a header row is allowed).

    Errors name the file and the line: a naive time, a bad number, or starts out of order.
    """
    starts: list[datetime] = []
    prices: list[float] = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if lineno == 1 and not row[0].strip()[:1].isdigit():
            continue  # header
        if len(row) < 2:
            raise TariffError(f"{source} line {lineno}: expected start,price_per_kwh, got {row!r}")
        try:
            start = datetime.fromisoformat(row[0].strip().replace("Z", "+00:00"))
        except ValueError:
            raise TariffError(f"{source} line {lineno}: start {row[0]!r} is not an ISO time") from None
        if start.tzinfo is None:
            raise TariffError(f"{source} line {lineno}: start {row[0]!r} has no UTC offset")
        try:
            price = float(row[1])
        except ValueError:
            raise TariffError(f"{source} line {lineno}: price {row[1]!r} is not a number") from None
        if not np.isfinite(price):
            raise TariffError(f"{source} line {lineno}: price {row[1]!r} is not finite")
        start = start.astimezone(UTC)
        if starts and start <= starts[-1]:
            raise TariffError(f"{source} line {lineno}: start {row[0]!r} is not after the previous row")
        starts.append(start)
        prices.append(price)
    return PriceSeries(tuple(starts), tuple(prices), source)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


@dataclass(frozen=True)
class Tariff:
    """Prices for any set of steps. Build it with ``tariff_from_config``."""

    timezone: str
    import_kind: TwoRate | Flat | Csv
    export_kind: Flat | Csv
    import_series: PriceSeries | None = None
    export_series: PriceSeries | None = None

    def prices(self, starts: Sequence[datetime] | pd.DatetimeIndex, step_s: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean import and export price (per kWh) over each step ``[start, start + step_s)``."""
        index = pd.DatetimeIndex(starts)
        if index.tz is None:
            raise TariffError("step starts must carry a time zone")
        index = index.tz_convert("UTC")
        # One sample a minute (at most 60 per step); steps shorter than a minute take one sample.
        samples = max(1, step_s // 60)
        offsets = pd.to_timedelta(np.arange(samples) * (step_s / samples), unit="s")
        grid = (index.tz_convert(None).to_numpy()[:, None] + offsets.to_numpy()[None, :]).ravel()
        moments = pd.DatetimeIndex(grid, tz="UTC")
        imp = self._price(self.import_kind, self.import_series, moments).reshape(len(index), samples)
        exp = self._price(self.export_kind, self.export_series, moments).reshape(len(index), samples)
        # Rounded so a mean of equal prices is that price, not 0.30000000000000004.
        return np.round(imp.mean(axis=1), 9), np.round(exp.mean(axis=1), 9)

    def _price(self, kind: TwoRate | Flat | Csv, series: PriceSeries | None, moments: pd.DatetimeIndex) -> np.ndarray:
        if isinstance(kind, Flat):
            return np.full(len(moments), kind.price_per_kwh)
        if isinstance(kind, TwoRate):
            local = moments.tz_convert(self.timezone)
            minute = np.asarray(local.hour * 60 + local.minute)
            start, end = _minutes(kind.off_peak.start), _minutes(kind.off_peak.end)
            if start <= end:
                cheap = (minute >= start) & (minute < end)
            else:  # window across midnight, e.g. 22:00-06:00
                cheap = (minute >= start) | (minute < end)
            return np.where(cheap, kind.off_peak.price_per_kwh, kind.peak_price_per_kwh)
        assert series is not None
        starts = pd.DatetimeIndex(list(series.starts)).tz_convert("UTC")
        before = moments < starts[0]
        after = moments >= pd.Timestamp(series.end)
        if before.any() or after.any():
            bad = moments[before | after][0]
            series.at(bad.to_pydatetime())  # raises with the coverage in the message
        position = np.searchsorted(starts.as_unit("ns").asi8, moments.as_unit("ns").asi8, side="right") - 1
        return np.asarray(series.prices)[position]


def tariff_from_config(cfg: TariffConfig, read_text: Callable[[str], str] | None = None) -> Tariff:
    """A ``Tariff``; ``read_text(path)`` supplies the contents of CSV tariffs (the caller's I/O)."""

    def series(kind: TwoRate | Flat | Csv, what: str) -> PriceSeries | None:
        if not isinstance(kind, Csv):
            return None
        if read_text is None:
            raise TariffError(f"tariff.{what} is a CSV ({kind.path}) but no file reader was given")
        return parse_price_csv(read_text(kind.path), source=kind.path)

    return Tariff(
        timezone=cfg.timezone,
        import_kind=cfg.import_,
        export_kind=cfg.export,
        import_series=series(cfg.import_, "import"),
        export_series=series(cfg.export, "export"),
    )
