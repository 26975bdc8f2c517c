"""A store the real recorder filled, and the config that points at it: the embedded SQLite store,
or a real InfluxDB 1.x (``influx_url``). The report and the backtest's ``--from-store`` tests read
their data back from one of these.

``feed(messages)`` is the usual filling: each fleet message through ``Recorder.handle``; a test
that needs more (the daily statistics job, say) passes its own ``Fill``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.devtools.devdb import influxd_available, running_influxd
from services.recorder.backends import Backend, InfluxQLReader, InfluxV1Writer, Reader, SqliteStore
from services.recorder.pipeline import Recorder
from services.recorder.spool import Spool
from shared.config import OngridConfig, load_config
from shared.messages import Message

# What fills the store: the recorder to hand messages (or rows) to, the store to read back, the config.
Fill = Callable[[Recorder, Reader, OngridConfig], Awaitable[None]]


def store_config(tmp: Path, data: dict[str, Any], influx_url: str | None = None) -> Path:
    """``tmp/ongrid.yaml``: ``data`` with the recorder's spool and SQLite store under ``tmp`` (keys
    of ``data["recorder"]`` kept), and InfluxDB at ``influx_url`` when given."""
    recorder = {"spool_dir": str(tmp / "spool"), "sqlite_path": str(tmp / "store.sqlite"), **data.get("recorder", {})}
    full = {**data, "recorder": recorder}
    if influx_url:
        full["influxdb"] = {"api": "v1", "url": influx_url, "database": "ongrid"}
    path = tmp / "ongrid.yaml"
    path.write_text(yaml.safe_dump(full))
    return path


def feed(messages: Iterable[tuple[str, Message]]) -> Fill:
    async def fill(recorder: Recorder, reader: Reader, cfg: OngridConfig) -> None:
        for topic, message in messages:
            await recorder.handle(topic, message)

    return fill


def record(config: Path, fill: Fill, *, batch_size: int = 5000, drain_s: float = 120) -> None:
    """Run the real recorder into the store ``config`` names (InfluxDB when it has one) while
    ``fill`` hands it data, until everything is written."""
    cfg = load_config(config)
    backend: Backend
    reader: Reader
    if cfg.influxdb is None:
        backend = reader = SqliteStore(Path(cfg.recorder.sqlite_path))
    else:
        backend, reader = InfluxV1Writer(cfg.influxdb), InfluxQLReader(cfg.influxdb)

    async def go() -> None:
        recorder = Recorder(backend, Spool(Path(cfg.recorder.spool_dir), 10**9), recorder_id="r", batch_size=batch_size)
        runner = asyncio.create_task(recorder.run())
        await fill(recorder, reader, cfg)
        await recorder.drained(drain_s)
        runner.cancel()

    asyncio.run(go())


@contextlib.contextmanager
def influx_url() -> Iterator[str]:
    """A private InfluxDB 1.x for the block (skips the test where influxd is not installed)."""
    if not influxd_available():
        pytest.skip("influxd not installed (apt-get install influxdb)")
    with running_influxd() as server:
        yield server.url
