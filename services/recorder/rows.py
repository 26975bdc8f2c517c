"""A stored point, independent of the database: measurement, tags, fields, time in ns.

Rows are what every backend writes, and their line protocol (``Row.line``, made once when the
row is made) is what the spool keeps on disk and what InfluxDB receives. A row's identity is its
*series* (measurement + tags) and its time: writing the same row twice overwrites it in InfluxDB
and in the SQLite store alike, which is what makes replay exactly-once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
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
    # Integer arithmetic on the timedelta's parts: a third of ``delta // timedelta(microseconds=1)``.
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000


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


_plans: dict[tuple[str, ...], tuple[tuple[str, str, str], ...] | None] = {}


def _field_plan(keys: tuple[str, ...]) -> tuple[tuple[str, str, str], ...] | None:
    """(name, stored name, escaped ``stored name=``) in line protocol's order (sorted by stored
    name), for one set of field names; cached, since a payload kind always has the same names.
    ``None`` when two names become one stored name."""
    try:
        return _plans[keys]
    except KeyError:
        pass
    safe = [(_safe_name(key), key) for key in keys]
    plan = None
    if len({name for name, _key in safe}) == len(safe):
        plan = tuple((key, name, lineproto.escape_key(name) + "=") for name, key in sorted(safe))
    if len(_plans) >= _TAGS_CACHE_MAX:
        _plans.clear()
    _plans[keys] = plan
    return plan


def _plain(measurement: str, key: str, value: object) -> FieldValue:
    """A field value as stored: ``bool`` as 0/1, a subclass of ``str``/``int``/``float`` (a StrEnum,
    an IntEnum) as its plain value; anything else, or a number that is not finite, refused."""
    kind = type(value)
    if kind is bool:
        return int(value)  # type: ignore[call-overload, no-any-return]
    if kind is str or kind is int:
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        number = float(value)
        if not math.isfinite(number):
            raise RowError(f"{measurement}.{key}: {number} is not a finite number")
        return number
    raise RowError(f"{measurement}.{key}: {type(value).__name__} {value!r} is not a field value")


# A point's identity (``Row.key``), what both stores overwrite on: its series (measurement and
# tags) and its time.
PointKey = tuple[str, tuple[tuple[str, str], ...], int]


def point_keys(rows: Iterable[Row]) -> set[PointKey]:
    """The points ``rows`` write (``Row.key``): two batches that share one must land in order."""
    return {row.key for row in rows}


class Row:
    """One point. Treat as immutable. A plain slotted class, not a frozen dataclass: a frozen
    dataclass sets each attribute through ``object.__setattr__``, which was half the cost of making
    a row on the recorder's hot path."""

    __slots__ = ("_fields", "line", "measurement", "tags", "ts_ns")

    def __init__(
        self,
        measurement: str,
        tags: tuple[tuple[str, str], ...],
        fields: Mapping[str, FieldValue] | None,
        ts_ns: int,
        line: str = "",
    ) -> None:
        self.measurement = measurement
        self.tags = tags
        # ``None``: read from ``line`` when first asked for (``fields``). The recorder's hot path
        # (points.py's templates) writes the line only: InfluxDB and the spool need nothing else.
        self._fields = fields
        self.ts_ns = ts_ns
        # The row as one line of line protocol (no newline): its spool record and its /write body.
        if not line:
            if fields is None:
                raise RowError(f"{measurement}: a row needs its fields or its line")
            line = lineproto.encode(measurement, tags, fields, ts_ns)
        self.line = line

    @property
    def fields(self) -> Mapping[str, FieldValue]:
        """Field name -> value as stored (what the line says: a whole float is a float)."""
        fields = self._fields
        if fields is None:
            fields = self._fields = lineproto.parse_one(self.line + "\n")[2]
        return fields

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
        """Drop empty tags and ``None`` fields, sort tags (a series has one spelling), check values.

        The row's line protocol is written in the same pass (``lineproto.encode`` would check every
        value's type a second time: together they were the largest cost of a recorder taking a
        neighbourhood's messages); tests/unit/test_lineproto.py holds both to influxdb-client."""
        plan = _field_plan(tuple(fields))
        if plan is None:  # two names that become one stored name: the general path decides
            return Row._make_general(measurement, tags, fields, ts_ns)
        clean_fields: dict[str, FieldValue] = {}
        pieces: list[str] = []
        append = pieces.append
        for key, safe, head in plan:
            value = fields[key]
            kind = type(value)
            if kind is float:
                if value - value != 0.0:  # type: ignore[operator]  # inf - inf and nan - nan are nan
                    raise RowError(f"{measurement}.{key}: {value} is not a finite number")
                text = repr(value)
                # As influxdb-client: a whole number without the trailing ".0" (still a float field).
                append(head + (text[:-2] if text.endswith(".0") else text))
            elif kind is int:
                append(f"{head}{value}i")
            elif kind is str:
                append(head + '"' + value.translate(lineproto.ESCAPE_STRING) + '"')  # type: ignore[union-attr]
            elif value is None:
                continue
            else:
                value = _plain(measurement, key, value)
                append(lineproto.encode_field(head, value))
            clean_fields[safe] = value  # type: ignore[assignment]
        return Row.assemble(measurement, tags, clean_fields, pieces, ts_ns)

    @staticmethod
    def assemble(
        measurement: str, tags: Mapping[str, str | None], fields: dict[str, FieldValue], pieces: list[str], ts_ns: int
    ) -> Row:
        """A row from fields already checked and encoded (``pieces``: ``key=value`` in line
        protocol's order), as ``make`` ends: points.py's per-class plans encode in one pass."""
        if not fields:
            raise RowError(f"{measurement}: a point needs at least one field")
        name = _safe_name(measurement)
        clean_tags = _clean_tags(tags)
        line = f"{lineproto.series_prefix(name, clean_tags)} {','.join(pieces)} {ts_ns}"
        return Row(name, clean_tags, fields, ts_ns, line)

    @staticmethod
    def assemble_line(measurement: str, tags: Mapping[str, str | None], field_text: str, ts_ns: int) -> Row:
        """A row from its field set already written as line protocol (``k=v,k=v`` in line
        protocol's order, values checked): its fields are read back from the line when asked for."""
        name = _safe_name(measurement)
        clean_tags = _clean_tags(tags)
        return Row(name, clean_tags, None, ts_ns, f"{lineproto.series_prefix(name, clean_tags)} {field_text} {ts_ns}")

    @staticmethod
    def _make_general(
        measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, FieldValue | None], ts_ns: int
    ) -> Row:
        clean_fields: dict[str, FieldValue] = {}
        for key, value in fields.items():
            if value is not None:
                clean_fields[_safe_name(key)] = _plain(measurement, key, value)
        if not clean_fields:
            raise RowError(f"{measurement}: a point needs at least one field")
        return Row(_safe_name(measurement), _clean_tags(tags), clean_fields, ts_ns)

    @property
    def key(self) -> PointKey:
        """The point this row writes: a row with the same key overwrites it (a redelivery, a
        replanned step), one with another key is a point of its own."""
        return self.measurement, self.tags, self.ts_ns

    @property
    def series(self) -> str:
        """The series (``key`` without the time) as the SQLite store's key column spells it."""
        return self.measurement + "," + ",".join(f"{k}={v}" for k, v in self.tags)

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
