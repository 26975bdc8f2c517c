"""The embedded store: SQLite, so the demo, ``ongrid report`` and tests need nothing installed.

One table of points keyed by (series, time): ``INSERT OR REPLACE`` gives InfluxDB's overwrite
semantics, so a spool replay never doubles a point. Tags and fields are JSON objects.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from ..rows import Row
from ..views import Query
from .base import BackendDown, Series, StoredPoint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    series TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    measurement TEXT NOT NULL,
    tags TEXT NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (series, ts_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS points_by_time ON points (measurement, ts_ns);
"""


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


# InfluxQL's aggregates over one bucket's values, in time order.
_REDUCE: dict[str, Callable[[list[float]], float]] = {
    "mean": _mean,
    "max": max,
    "min": min,
    "last": lambda values: values[-1],
    "sum": sum,
    "count": lambda values: float(len(values)),
}


class SqliteStore:
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise BackendDown(f"cannot open the embedded store {path}: {exc}") from exc
        self._lock = threading.Lock()

    def write(self, rows: Sequence[Row]) -> None:
        data = [
            (row.series, row.ts_ns, row.measurement, json.dumps(dict(row.tags)), json.dumps(dict(row.fields)))
            for row in rows
        ]
        with self._lock:
            try:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?)", data)
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                # Full disk, locked or read-only file: the rows stay spooled.
                raise BackendDown(f"embedded store {self.path}: {exc}") from exc

    def points(
        self, measurement: str, start_ns: int, end_ns: int, where: dict[str, str] | None = None
    ) -> list[StoredPoint]:
        with self._lock:
            cursor = self.db.execute(
                "SELECT ts_ns, tags, fields FROM points WHERE measurement = ? AND ts_ns >= ? AND ts_ns < ? "
                "ORDER BY ts_ns",
                (measurement, start_ns, end_ns),
            )
            fetched = cursor.fetchall()
        out = []
        for ts, tags_text, fields_text in fetched:
            tags = json.loads(tags_text)
            if where and any(tags.get(k) != v for k, v in where.items()):
                continue
            out.append(StoredPoint(int(ts), tags, json.loads(fields_text)))
        return out

    def aggregate(self, query: Query, site: str, start_ns: int, end_ns: int, every_s: int) -> Series:
        """The same buckets InfluxQL's ``GROUP BY time(every)`` makes (aligned to the epoch)."""
        from ..views import every_seconds

        step = (every_seconds(query.every) if query.every else every_s) * 1_000_000_000
        where = {"site": site, **dict(query.where)}
        buckets: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for point in self.points(query.measurement, start_ns, end_ns, where):
            value = point.fields.get(query.field)
            if not isinstance(value, int | float):
                continue
            label = f"{query.group_by}={point.tags.get(query.group_by, '')}" if query.group_by else query.name
            buckets[label][point.ts_ns // step * step].append(float(value))
        reduce = _REDUCE[query.agg]
        return {label: [(t, float(reduce(v))) for t, v in sorted(b.items())] for label, b in buckets.items()}

    def count(self, measurement: str) -> int:
        with self._lock:
            return int(
                self.db.execute("SELECT COUNT(*) FROM points WHERE measurement = ?", (measurement,)).fetchone()[0]
            )

    def close(self) -> None:
        with self._lock:
            self.db.close()
