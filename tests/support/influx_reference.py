"""The reference the recorder's line protocol is held to: a row as influxdb-client's ``Point``
writes it (a library this project did not write)."""

from __future__ import annotations

from influxdb_client import Point, WritePrecision

from services.recorder.rows import Row

__all__ = ["influxdb_client_line"]


def influxdb_client_line(row: Row) -> str:
    """``row`` as one line of influxdb-client's line protocol, nanosecond time."""
    point = Point(row.measurement)
    for key, value in row.tags:
        point.tag(key, value)
    for key, field_value in row.fields.items():
        point.field(key, field_value)
    return str(point.time(row.ts_ns, WritePrecision.NS).to_line_protocol())
