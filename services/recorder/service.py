"""The recorder as a service: subscribe to the site, spool, write, publish status and statistics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from pathlib import Path

from shared import topics
from shared.bus import Bus
from shared.config import ConfigProblem, OngridConfig
from shared.contract import model_for_topic
from shared.homeassistant import announce
from shared.logs import get_logger
from shared.messages import DailyStats
from shared.topics import Kind

from .backends import open_backend, open_reader
from .backends.base import BackendDown
from .pipeline import Recorder
from .rows import Row
from .spool import Spool, SpoolError

log = get_logger("recorder")


def bus_options(cfg: OngridConfig) -> dict[str, object]:
    """A persistent session: QoS 1 messages published while the recorder is down wait in the broker."""
    return {
        "persistent_session": True,
        "session_expiry_s": cfg.recorder.session_expiry_s,
        "client_id": f"{cfg.mqtt.client_id_prefix}-{cfg.site}-{cfg.recorder.id}",
    }


def subscription(cfg: OngridConfig) -> str:
    pattern = topics.everything(topics.ANY if cfg.recorder.all_sites else cfg.site)
    if cfg.recorder.share_group:
        return topics.shared(cfg.recorder.share_group, pattern)
    return pattern


def build_recorder(cfg: OngridConfig) -> Recorder:
    rc = cfg.recorder
    spool = Spool(Path(rc.spool_dir) / cfg.site / rc.id, int(rc.spool_max_mb * 1_000_000))
    return Recorder(
        open_backend(cfg),
        spool,
        recorder_id=rc.id,
        batch_size=rc.batch_size,
        flush_interval_s=rc.flush_interval_s,
        retry_max_s=rc.retry_max_s,
        memory_max_rows=rc.memory_max_rows,
    )


def _writable_dir(key: str, value: str, directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigProblem(key, value, f"cannot create {directory}: {exc.strerror or exc}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigProblem(key, value, f"{directory} is not writable by this process")


def check_config(cfg: OngridConfig) -> None:
    """What can be known wrong before connecting: a spool or embedded store it cannot write."""
    rc = cfg.recorder
    _writable_dir("recorder.spool_dir", rc.spool_dir, Path(rc.spool_dir))
    if cfg.influxdb is None:
        _writable_dir("recorder.sqlite_path", rc.sqlite_path, Path(rc.sqlite_path).parent)


async def run(cfg: OngridConfig, bus: Bus) -> None:
    # Everything imported so far lives as long as the process: out of the cyclic collector's sight.
    # Its full collections walked every module, schema and cache at every turn, a third of the
    # recorder's time under load.
    gc.freeze()
    # A young collection every 20,000 new objects, not 700: a batch's models and rows are freed by
    # their reference counts long before, so each collection finds little and they are 30 times
    # rarer. 120,000 messages caught up (benchmarks/recorder_mqtt.py ``behind``, 2026-11-30): CPU
    # 5.6 s instead of 6.2 s, the collector's share 0.23 s instead of 0.67 s, peak memory 110.6 MB
    # either way. (On an older build, which read a backlog into paho objects, raised thresholds
    # had cost memory: 188-217 MB, docs/scaling.md; the spool's backpressure now bounds it.)
    gc.set_threshold(20_000, 10, 10)
    check_config(cfg)  # a ConfigProblem ends the service with status 2 (shared.service)
    try:
        recorder = build_recorder(cfg)
        reader = open_reader(cfg)
    except SpoolError as exc:
        raise ConfigProblem("recorder.spool_dir", cfg.recorder.spool_dir, str(exc)) from None
    except BackendDown as exc:
        if cfg.influxdb is not None:
            raise  # a database that is down is not a configuration problem
        raise ConfigProblem("recorder.sqlite_path", cfg.recorder.sqlite_path, str(exc)) from None
    bus.subscribe_batch(subscription(cfg), model_for_topic, recorder.handle_batch, qos=1)
    status_topic = topics.recorder_state(cfg.site, cfg.recorder.id)

    async def publish_stats(stats: DailyStats) -> None:
        await bus.publish(topics.daily_stats(cfg.site), stats)

    def store(rows: list[Row]) -> None:
        recorder.add_rows(rows)

    async def status_loop() -> None:
        while True:
            await asyncio.sleep(cfg.recorder.status_interval_s)
            await bus.publish(status_topic, recorder.status())

    async def stats_loop() -> None:
        job = None
        while True:
            await asyncio.sleep(cfg.recorder.stats_interval_s)
            try:
                if job is None:
                    # Imported at the first run, not at start: the statistics bring pandas, scipy
                    # and pvlib (~90 MB), which a recorder that only records never needs.
                    from .stats_job import StatsJob

                    job = StatsJob(cfg, reader, publish_stats, store)
                await job.once()
            except Exception:
                # One bad day of data must not stop the recording.
                log.exception("statistics run failed")

    log.info(
        "recording %s into %s (spool %s, %d rows waiting)",
        subscription(cfg),
        recorder.backend.name,
        recorder.spool.dir,
        recorder.spool.backlog_rows,
    )
    # The daily statistics' Home Assistant entities are the recorder's to announce.
    tasks = [
        asyncio.create_task(coro)
        for coro in (recorder.run(), status_loop(), stats_loop(), announce(bus, cfg, Kind.STATS))
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if recorder.database_ok:
            # A last write while the database answers; otherwise the spool keeps it for next time.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(recorder.flush(), 5)
        recorder.spool.close()
        recorder.backend.close()
        reader.close()
