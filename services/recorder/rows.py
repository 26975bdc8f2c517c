"""A stored point, independent of the database: measurement, tags, fields, time in ns.

Rows are what the spool keeps on disk (one JSON object a line) and what every backend writes.
A row's identity is its *series* (measurement + tags) and its time: writing the same row twice
overwrites it in InfluxDB and in the SQLite store alike, which is what makes replay exactly-once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from influxdb_client import Point, WritePrecision

FieldValue = float | int | str

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RowError(ValueError):
    """A row that no database would accept; the message names the field and value."""


def ns(when: datetime) -> int:
    """Nanoseconds since the epoch, exact (no float rounding), for an aware datetime."""
    if when.tzinfo is None:
        raise RowError(f"time {when!r} has no time zone")
    delta = when - _EPOCH
    return (delta // timedelta(microseconds=1)) * 1000


def from_ns(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value // 1000)


@dataclass(frozen=True, slots=True)
class Row:
    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: Mapping[str, FieldValue]
    ts_ns: int

    @staticmethod
    def make(
        measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, FieldValue | None], ts_ns: int
    ) -> Row:
        """Drop empty tags and ``None`` fields, sort tags (a series has one spelling), check values."""
        clean_tags = tuple(sorted((k, str(v)) for k, v in tags.items() if v is not None and str(v) != ""))
        clean_fields: dict[str, FieldValue] = {}
        for key, value in fields.items():
            if value is None:
                continue
            if isinstance(value, bool):
                value = int(value)
            if isinstance(value, float) and not math.isfinite(value):
                raise RowError(f"{measurement}.{key}: {value} is not a finite number")
            if not isinstance(value, int | float | str):
                raise RowError(f"{measurement}.{key}: {type(value).__name__} {value!r} is not a field value")
            clean_fields[key] = value
        if not clean_fields:
            raise RowError(f"{measurement}: a point needs at least one field")
        return Row(measurement, clean_tags, clean_fields, ts_ns)

    @property
    def series(self) -> str:
        return self.measurement + "," + ",".join(f"{k}={v}" for k, v in self.tags)

    @property
    def key(self) -> tuple[str, int]:
        return self.series, self.ts_ns

    def to_json(self) -> str:
        return json.dumps(
            {"m": self.measurement, "t": dict(self.tags), "f": dict(self.fields), "ts": self.ts_ns},
            separators=(",", ":"),
        )

    @staticmethod
    def from_json(line: str) -> Row:
        data = json.loads(line)
        return Row(data["m"], tuple(sorted(data["t"].items())), data["f"], int(data["ts"]))

    def to_point(self) -> Point:
        point = Point(self.measurement)
        for key, value in self.tags:
            point.tag(key, value)
        for key, field_value in self.fields.items():
            point.field(key, field_value)
        return point.time(self.ts_ns, WritePrecision.NS)

    def to_line(self) -> str:
        return str(self.to_point().to_line_protocol())
