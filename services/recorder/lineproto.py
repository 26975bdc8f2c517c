"""InfluxDB line protocol for the recorder's rows: the text sent to ``/write`` and kept in the spool.

Why not influxdb-client's ``Point`` (which the recorder used before): building a ``Point`` per row
and calling ``to_line_protocol()`` cost ~60 µs a row and was the largest item in the recorder's
profile. This module writes the *same bytes* ``Point`` writes (same escaping, fields sorted, whole
floats without ``.0``, integers with ``i``; tests/unit/test_lineproto.py checks it against
``Point`` on generated rows) at a fraction of the cost: a series' escaped ``measurement,tags``
prefix is made once and reused, and field keys are escaped once.

``parse`` reads lines back (the spool's replay into the embedded store) the way InfluxDB 1.x reads
them: ``\\,`` ``\\=`` ``\\ `` are the only escapes in names and tags, ``\\"`` and ``\\\\`` in
string fields; a newline inside a quoted string field does not end the line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

FieldValue = float | int | str

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})

# Bounded caches: a neighbourhood has tens of thousands of series, not millions; past the bound
# the cache starts again rather than growing with whatever names arrive.
_CACHE_MAX = 200_000
_prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
_plans: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}


class LineError(ValueError):
    """A line that is not line protocol as this module writes it (a torn spool line)."""


def escape_measurement(name: str) -> str:
    return name.translate(_ESCAPE_MEASUREMENT)


def escape_key(key: str) -> str:
    """A tag key, tag value or field key, escaped as influxdb-client does."""
    return key.translate(_ESCAPE_KEY)


def _tag_value(value: str) -> str:
    escaped = value.translate(_ESCAPE_KEY)
    # As influxdb-client: a trailing backslash would escape the separator after it.
    return escaped + " " if escaped.endswith("\\") else escaped


def series_prefix(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """``measurement,k=v,...`` (tags in the given order, which rows keep sorted), cached."""
    key = (measurement, tags)
    prefix = _prefixes.get(key)
    if prefix is None:
        parts = [measurement.translate(_ESCAPE_MEASUREMENT)]
        parts += [f"{k.translate(_ESCAPE_KEY)}={_tag_value(v)}" for k, v in tags if k and v]
        prefix = ",".join(parts)
        if len(_prefixes) >= _CACHE_MAX:
            _prefixes.clear()
        _prefixes[key] = prefix
    return prefix


def _field_plan(keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(key, escaped ``key=``) in sorted order, for one set of field names (cached: a payload kind
    always has the same names)."""
    plan = _plans.get(keys)
    if plan is None:
        plan = tuple((key, key.translate(_ESCAPE_KEY) + "=") for key in sorted(keys))
        if len(_plans) >= _CACHE_MAX:
            _plans.clear()
        _plans[keys] = plan
    return plan


def encode_field(head: str, value: FieldValue) -> str:
    """``key=value`` of one field, ``head`` being the escaped ``key=``."""
    kind = type(value)
    if kind is float:
        text = repr(value)
        # As influxdb-client: a whole number without the trailing ".0" (still a float field).
        return head + (text[:-2] if text.endswith(".0") else text)
    if kind is int:
        return f"{head}{value}i"
    return head + '"' + value.translate(ESCAPE_STRING) + '"'  # type: ignore[union-attr]


def encode(measurement: str, tags: tuple[tuple[str, str], ...], fields: Mapping[str, FieldValue], ts_ns: int) -> str:
    """One line (no newline). Fields must already be ``int``, ``float`` (finite) or ``str``."""
    out = [encode_field(head, fields[key]) for key, head in _field_plan(tuple(fields))]
    return f"{series_prefix(measurement, tags)} {','.join(out)} {ts_ns}"


# -- reading lines back ------------------------------------------------------------------------

# A field: key (escapes allowed), '=', then a quoted string (escapes allowed) or a bare number.
_FIELD = re.compile(r'((?:[^,= \\]|\\.)+)=(?:"((?:[^"\\]|\\.)*)"|([^, \n"]+))', re.DOTALL)
_UNESCAPE_NAME = re.compile(r"\\([,= ])")
_UNESCAPE_STRING = re.compile(r'\\(["\\])')


def _name(text: str) -> str:
    return _UNESCAPE_NAME.sub(r"\1", text) if "\\" in text else text


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped with a backslash."""
    if "\\" not in text:
        return text.split(sep)
    parts, start, i = [], 0, 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _end_of_key(text: str, start: int) -> int:
    """Index of the first unescaped space at or after ``start`` (the end of measurement+tags)."""
    i = start
    while True:
        space = text.find(" ", i)
        if space < 0:
            raise LineError("no field set")
        backslashes = 0
        j = space - 1
        while j >= start and text[j] == "\\":
            backslashes += 1
            j -= 1
        if backslashes % 2 == 0:
            return space
        i = space + 1


def parse_one(text: str, start: int = 0) -> tuple[str, tuple[tuple[str, str], ...], dict[str, FieldValue], int, int]:
    """(measurement, tags, fields, ts_ns, index after the line's newline) of the line at ``start``."""
    space = _end_of_key(text, start)
    key_parts = _split_unescaped(text[start:space], ",")
    measurement = _name(key_parts[0])
    tags = []
    for part in key_parts[1:]:
        pieces = _split_unescaped(part, "=")
        if len(pieces) != 2:
            raise LineError(f"bad tag {part!r}")
        tags.append((_name(pieces[0]), _name(pieces[1])))
    fields: dict[str, FieldValue] = {}
    pos = space + 1
    while True:
        match = _FIELD.match(text, pos)
        if match is None:
            raise LineError(f"bad field at {text[pos : pos + 40]!r}")
        key, quoted, bare = match.groups()
        if quoted is not None:
            fields[_name(key)] = _UNESCAPE_STRING.sub(r"\1", quoted) if "\\" in quoted else quoted
        elif bare.endswith("i"):
            fields[_name(key)] = int(bare[:-1])
        else:
            fields[_name(key)] = float(bare)
        pos = match.end()
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        break
    if pos >= len(text) or text[pos] != " ":
        raise LineError("no timestamp")
    end = text.find("\n", pos)
    if end < 0:
        raise LineError("line not finished (no newline)")
    try:
        ts = int(text[pos + 1 : end])
    except ValueError as exc:
        raise LineError(f"bad timestamp {text[pos + 1 : end]!r}") from exc
    return measurement, tuple(tags), fields, ts, end + 1
