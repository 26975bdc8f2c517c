"""A stored point, independent of the database: measurement, tags, fields, time in ns.

Rows are what every backend writes, and their line protocol (``Row.line``, made once when the
row is made) is what the spool keeps on disk and what InfluxDB receives. A row's identity is its
*series* (measurement + tags) and its time: writing the same row twice overwrites it in InfluxDB
and in the SQLite store alike, which is what makes replay exactly-once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from . import lineproto
from .lineproto import FieldValue

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Names and tag sets seen before are looked up, not checked again (bounded: past the bound the
# caches start again rather than grow with whatever names arrive).
_TAGS_CACHE_MAX = 200_000
# Line protocol cannot carry these in names and tag values unambiguously (influxdb-client writes a
# newline as backslash-n, which InfluxDB then stores as two characters; a backslash before a
# separator changes how the line splits). They never occur in ongrid's names; if one does, it is
# stored as '/' or a space, so what a row says is what the database keeps.
_UNSAFE_NAME = str.maketrans({"\\": "/", "\n": " ", "\r": " ", "\t": " "})


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


_names: dict[str, str] = {}


def _safe_name(text: str) -> str:
    safe = _names.get(text)
    if safe is None:
        safe = text.translate(_UNSAFE_NAME)
        if len(_names) >= _TAGS_CACHE_MAX:
            _names.clear()
        _names[text] = safe
    return safe


_tags_cache: dict[tuple[tuple[str, str | None], ...], tuple[tuple[str, str], ...]] = {}


def _clean_tags(tags: Mapping[str, str | None]) -> tuple[tuple[str, str], ...]:
    """Tags without empty values, sorted (a series has one spelling); cached, since the same few
    thousand series come back every second."""
    key = tuple(tags.items())
    clean = _tags_cache.get(key)
    if clean is None:
        clean = tuple(sorted((_safe_name(k), _safe_name(str(v))) for k, v in key if v is not None and str(v) != ""))
        if len(_tags_cache) >= _TAGS_CACHE_MAX:
            _tags_cache.clear()
        _tags_cache[key] = clean
    return clean


class Row:
    """One point. Treat as immutable. A plain slotted class, not a frozen dataclass: a frozen
    dataclass sets each attribute through ``object.__setattr__``, which was half the cost of making
    a row on the recorder's hot path."""

    __slots__ = ("fields", "line", "measurement", "tags", "ts_ns")

    def __init__(
        self,
        measurement: str,
        tags: tuple[tuple[str, str], ...],
        fields: Mapping[str, FieldValue],
        ts_ns: int,
        line: str = "",
    ) -> None:
        self.measurement = measurement
        self.tags = tags
        self.fields = fields
        self.ts_ns = ts_ns
        # The row as one line of line protocol (no newline): its spool record and its /write body.
        self.line = line or lineproto.encode(measurement, tags, fields, ts_ns)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Row):
            return NotImplemented
        return (self.measurement, self.tags, self.ts_ns, self.fields) == (
            other.measurement,
            other.tags,
            other.ts_ns,
            other.fields,
        )

    __hash__ = None  # type: ignore[assignment]  # fields is a dict: rows are compared, not hashed

    def __repr__(self) -> str:
        return f"Row({self.measurement!r}, tags={self.tags!r}, fields={self.fields!r}, ts_ns={self.ts_ns!r})"

    @staticmethod
    def make(
        measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, FieldValue | None], ts_ns: int
    ) -> Row:
        """Drop empty tags and ``None`` fields, sort tags (a series has one spelling), check values."""
        clean_tags = _clean_tags(tags)
        clean_fields: dict[str, FieldValue] = {}
        for key, value in fields.items():
            kind = type(value)
            if kind is float:
                if not math.isfinite(value):  # type: ignore[arg-type]
                    raise RowError(f"{measurement}.{key}: {value} is not a finite number")
            elif kind is int or kind is str:
                pass
            elif value is None:
                continue
            elif kind is bool:
                value = int(value)  # type: ignore[arg-type]
            # Subclasses (a StrEnum, an IntEnum) are stored as their plain value.
            elif isinstance(value, str):
                value = str.__str__(value)
            elif isinstance(value, int):
                value = int(value)
            elif isinstance(value, float):
                value = float(value)
                if not math.isfinite(value):
                    raise RowError(f"{measurement}.{key}: {value} is not a finite number")
            else:
                raise RowError(f"{measurement}.{key}: {type(value).__name__} {value!r} is not a field value")
            clean_fields[_safe_name(key)] = value  # type: ignore[assignment]
        if not clean_fields:
            raise RowError(f"{measurement}: a point needs at least one field")
        return Row(_safe_name(measurement), clean_tags, clean_fields, ts_ns)

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
        """A row of a spool segment written by an older recorder (one JSON object a line)."""
        data = json.loads(line)
        return Row(data["m"], tuple(sorted(data["t"].items())), data["f"], int(data["ts"]))

    @staticmethod
    def from_line(text: str, start: int = 0) -> tuple[Row, int]:
        """The row whose line starts at ``start`` of ``text``, and where the next line starts."""
        measurement, tags, fields, ts, after = lineproto.parse_one(text, start)
        line = text[start : after - 1]
        return Row(measurement, tags, fields, ts, line), after

    def to_line(self) -> str:
        return self.line
