"""Reading a backtest CSV: ``timestamp,load_w,pv_w`` at a fixed step of 1-60 minutes.

An optional ``heat_pump_w`` column (named in the header) is what a configured heat pump draws while
it runs (``flexible.HeatPumpDemand``); ``load_w`` is then the house without it.

Every problem names the file and the line: a bad timestamp (or one without an offset), a value that
is not a finite non-negative number, a gap or a changed step, a duplicate or backwards time.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DataError", "Series", "parse_series", "read_series"]


class DataError(ValueError):
    """The CSV cannot be replayed; the message names the line."""


@dataclass(frozen=True, eq=False)
class Series:
    times: pd.DatetimeIndex  # UTC step starts
    load_w: np.ndarray
    pv_w: np.ndarray
    step_s: int
    heat_pump_w: np.ndarray | None = None  # a heat pump's draw while it runs (optional column)


def _number(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise DataError(f"{where}: {what} {text!r} must be a finite number >= 0")
    return value


def parse_series(text: str, source: str = "data") -> Series:
    rows = csv.reader(text.splitlines())
    times: list[datetime] = []
    load: list[float] = []
    pv: list[float] = []
    heat_pump: list[float] = []
    hp_column: int | None = None
    step_s: int | None = None
    columns = (0, 1, 2)
    for lineno, row in enumerate(rows, start=1):
        where = f"{source} line {lineno}"
        if not row or not "".join(row).strip():
            continue
        if lineno == 1 and not row[0].strip()[:1].isdigit():
            names = [c.strip().lower() for c in row]
            try:
                columns = (names.index("timestamp"), names.index("load_w"), names.index("pv_w"))
            except ValueError:
                raise DataError(
                    f"{where}: header must name timestamp, load_w and pv_w, got {row!r}"
                ) from None
            hp_column = names.index("heat_pump_w") if "heat_pump_w" in names else None
            continue
        if len(row) <= max(*columns, hp_column or 0):
            raise DataError(f"{where}: expected timestamp,load_w,pv_w, got {row!r}")
        stamp = row[columns[0]].strip()
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            raise DataError(f"{where}: timestamp {stamp!r} is not an ISO time") from None
        if when.tzinfo is None:
            raise DataError(f"{where}: timestamp {stamp!r} has no UTC offset (add +00:00 or Z)")
        when = when.astimezone(UTC)
        if times:
            delta = (when - times[-1]).total_seconds()
            if delta <= 0:
                raise DataError(f"{where}: timestamp {stamp!r} is not after the previous row")
            if step_s is None:
                if not 60 <= delta <= 3600 or delta % 60:
                    raise DataError(f"{where}: step of {delta:.0f} s; need whole minutes from 1 to 60")
                step_s = int(delta)
            elif delta != step_s:
                kind = "gap" if delta > step_s else "irregular step"
                raise DataError(f"{where}: {kind}: {delta:.0f} s after the previous row, expected {step_s} s")
        times.append(when)
        load.append(_number(row[columns[1]].strip(), "load_w", where))
        pv.append(_number(row[columns[2]].strip(), "pv_w", where))
        if hp_column is not None:
            heat_pump.append(_number(row[hp_column].strip(), "heat_pump_w", where))
    if len(times) < 2 or step_s is None:
        raise DataError(f"{source}: needs at least two data rows")
    hp = np.array(heat_pump) if hp_column is not None else None
    return Series(pd.DatetimeIndex(times), np.array(load), np.array(pv), step_s, hp)


def read_series(path: str | Path) -> Series:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_series(text, str(path))
