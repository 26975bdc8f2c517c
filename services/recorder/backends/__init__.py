"""Where rows go: InfluxDB v1 (``/write``), InfluxDB v2 write API, or the embedded SQLite store.

Every backend has a blocking ``write(rows)`` (run in a worker thread) that either stores all the
rows, raises ``BackendDown`` (keep them spooled and retry) or ``BackendRejected`` (the database
refused the data itself: retrying cannot help). ``open_backend`` picks one from the config.
"""

from __future__ import annotations

from pathlib import Path

from shared.config import OngridConfig

from .base import Backend, BackendDown, BackendError, BackendRejected, Reader, StoredPoint
from .influx import InfluxQLReader, InfluxV1Writer, InfluxV2Writer
from .sqlite import SqliteStore

__all__ = [
    "Backend",
    "BackendDown",
    "BackendError",
    "BackendRejected",
    "InfluxQLReader",
    "InfluxV1Writer",
    "InfluxV2Writer",
    "Reader",
    "SqliteStore",
    "StoredPoint",
    "open_backend",
    "open_reader",
]


def open_backend(cfg: OngridConfig) -> Backend:
    influx = cfg.influxdb
    if influx is None:
        return SqliteStore(Path(cfg.recorder.sqlite_path))
    if influx.api == "v2":
        return InfluxV2Writer(influx)
    return InfluxV1Writer(influx)


def open_reader(cfg: OngridConfig) -> Reader:
    if cfg.influxdb is None:
        return SqliteStore(Path(cfg.recorder.sqlite_path))
    return InfluxQLReader(cfg.influxdb)
