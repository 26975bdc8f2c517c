"""The recorder's write path: message -> rows -> spool (durable) -> database, with status.

The guarantee, precisely: a message is appended to the spool as soon as the bus hands it over
(the handler does nothing else that can fail slowly), and the spool is fsynced when a segment is
sealed (every ``batch_size`` rows or ``flush_interval_s``). A segment leaves the spool only after
the database acknowledged all of its rows. So:

* database down, slow or full: nothing is lost while the spool has room (``spool_max_mb``; then
  the oldest rows are dropped, logged and counted);
* recorder stopped or SIGKILLed: messages not yet received stay queued in the broker (persistent
  session, QoS 1) and arrive on restart; messages already appended to the spool are replayed.
  The bus acknowledges a message only after this handler returned (manual ack on persistent
  sessions, shared/bus.py), so nothing acknowledged is lost with the process. An OS crash can
  lose what was appended but not yet sealed (at most one flush interval), since appends reach
  the page cache, not the disk;
* replay never doubles a point: rows carry their series and time, and both InfluxDB and the
  SQLite store overwrite on (series, time).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from shared.logs import EpisodeLog, get_logger
from shared.messages import Message, RecorderStatus, utc_now
from shared.topics import TopicParts, parse

from .backends import Backend, BackendDown, BackendRejected
from .points import to_rows
from .rows import PointKey, Row, point_keys
from .spool import CACHED_ROWS, Segment, Spool, SpoolError

log = get_logger("recorder")
# Parsed topics kept (a neighbourhood repeats the same topics every second); bounded.
_TOPICS_MAX = 100_000
# Spool segments written at once (one request each), see ``Recorder._write_segments``.
WRITERS = 4


@dataclass
class Counters:
    received: int = 0
    rows_in: int = 0
    written: int = 0
    rejected: int = 0
    unmapped: int = 0
    write_failures: int = 0
    spool_failures: int = 0
    lost_rows: int = 0


class Recorder:
    def __init__(
        self,
        backend: Backend,
        spool: Spool,
        *,
        recorder_id: str,
        batch_size: int = 500,
        flush_interval_s: float = 1.0,
        retry_max_s: float = 30.0,
        memory_max_rows: int = 200_000,
    ) -> None:
        self.backend = backend
        self.spool = spool
        self.recorder_id = recorder_id
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_max_s = retry_max_s
        self.counters = Counters()
        self.database_ok = True
        self.last_error: str | None = None
        # Rows the spool could not take (full disk): tried directly, bounded, oldest dropped.
        self._memory: deque[Row] = deque()
        self._memory_max = memory_max_rows
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()  # a write finished (or failed): backpressure re-checks
        self._idle = asyncio.Event()
        self._idle.set()
        self._topics: dict[str, TopicParts] = {}
        self._episode = EpisodeLog(log, f"database {backend.name}")
        self._spool_episode = EpisodeLog(log, f"spool {spool.dir}")

    # -- intake ------------------------------------------------------------------------------

    async def handle(self, topic: str, message: Message) -> None:
        """One message: store its rows in the spool, nothing slower."""
        await self.handle_batch([(topic, message, None)])

    async def handle_batch(self, items: Sequence[tuple[str, Message, bytes | None]]) -> None:
        """The bus handler (``Bus.subscribe_batch``): the rows of every message that arrived
        together go to the spool in one append. Each message comes with the bytes it arrived as
        (``None``: the rows take its canonical JSON, see ``points.to_rows``)."""
        rows: list[Row] = []
        for topic, message, payload in items:
            self.counters.received += 1
            try:
                rows += to_rows(self._parts(topic), message, payload)
            except ValueError as exc:
                self.counters.unmapped += 1
                log.warning("not recorded: %s", exc, extra={"topic": topic})
        if rows:
            self.add_rows(rows)
        await self._room()

    def _parts(self, topic: str) -> TopicParts:
        parts = self._topics.get(topic)
        if parts is None:
            parts = parse(topic)
            if len(self._topics) >= _TOPICS_MAX:
                self._topics.clear()
            self._topics[topic] = parts
        return parts

    def add_rows(self, rows: list[Row]) -> None:
        self.counters.rows_in += len(rows)
        self._idle.clear()
        try:
            self.spool.append(rows)
            self._spool_episode.success()
        except SpoolError as exc:
            self.counters.spool_failures += 1
            self._spool_episode.failure(exc)
            self._keep_in_memory(rows)
        if self.spool.open_rows >= self.batch_size:
            # A segment per batch, whether or not the writer is free: one request each, and only
            # the newest segments are held in memory (spool.CACHED_ROWS), however long the backlog.
            try:
                self.spool.seal()
            except SpoolError as exc:
                self.counters.spool_failures += 1
                self._spool_episode.failure(exc)
        if self.spool.backlog_rows >= self.batch_size or self._memory:
            self._wake.set()

    async def _room(self) -> None:
        """Backpressure: while the database answers but more slowly than messages arrive, wait
        until what is spooled fits the in-memory cache. The bus acknowledges (and the broker sends
        more) only after the handler returns, so the backlog stays in the broker's session queue
        instead of being re-read from disk later. While the database is down the spool takes
        everything (that is what it is for)."""
        limit = max(CACHED_ROWS, 2 * self.batch_size)  # room for one batch written while one fills
        while self.database_ok and self.spool.backlog_rows > limit:
            self._progress.clear()
            self._wake.set()
            await self._progress.wait()

    def _keep_in_memory(self, rows: list[Row]) -> None:
        self._memory.extend(rows)
        overflow = len(self._memory) - self._memory_max
        if overflow > 0:
            for _ in range(overflow):
                self._memory.popleft()
            self.counters.lost_rows += overflow
            log.error("spool unwritable and memory buffer full: dropped the oldest %d rows", overflow)

    # -- the flush loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Seal and write until cancelled; on cancel, seal what is open so a restart replays it."""
        backoff = 0.0
        try:
            while True:
                if backoff:
                    await asyncio.sleep(backoff)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
                self._wake.clear()
                ok = await self.flush()
                backoff = 0.0 if ok else min(self.retry_max_s, max(0.5, backoff * 2))
        finally:
            try:
                self.spool.seal()
            except SpoolError as exc:
                log.error("could not seal the spool on stop: %s", exc)

    async def flush(self) -> bool:
        """Write everything waiting, oldest first. False when the database is down (retry later)."""
        try:
            self.spool.seal()
        except SpoolError as exc:
            self.counters.spool_failures += 1
            self._spool_episode.failure(exc)
        if not await self._write_segments(self.spool.segments):
            return False
        if self._memory:
            rows = list(self._memory)
            if not await self._write(rows):
                return False
            for _ in rows:
                self._memory.popleft()
        if self.spool.backlog_rows == 0 and not self._memory:
            self._idle.set()
        return True

    async def _write_segments(self, segments: list[Segment]) -> bool:
        """Oldest first, up to ``WRITERS`` requests at once: InfluxDB parses one request while the
        next travels and the recorder reads on (one at a time, the recorder stored 4,200-6,300
        messages/s from MQTT in the same run where four stored 8,400: docs/recorder.md). Each
        segment is deleted once all of its rows were acknowledged, whichever finishes first; after
        a failure no new request starts, and the ones under way finish (a segment written but not
        yet deleted is written again later, which overwrites).

        Both stores keep the last write of a point (series and time), and a point can come again
        with newer values (a plan's step replanned, a day's statistics recomputed). Requests in
        flight land in any order, so a segment that holds a point an older segment still in flight
        also holds waits for it: the newer message's values are the ones kept, as in the order
        the messages arrived. The same wait keeps a failed older segment, written again later,
        from overwriting what a newer one stored."""
        running: dict[asyncio.Task[bool], set[PointKey]] = {}
        ok = True
        try:
            for segment in segments:
                rows = await asyncio.to_thread(self.spool.read, segment)
                points = point_keys(rows)
                while running and (len(running) >= WRITERS or any(not points.isdisjoint(p) for p in running.values())):
                    done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        del running[task]
                        ok = task.result() and ok
                    if not ok:
                        break
                if not ok:
                    break
                running[asyncio.create_task(self._write_segment(segment, rows))] = points
            if running:
                ok = all(await asyncio.gather(*running)) and ok
        finally:
            for task in running:
                task.cancel()
        return ok

    async def _write_segment(self, segment: Segment, rows: list[Row]) -> bool:
        for start in range(0, len(rows), self.batch_size):
            if not await self._write(rows[start : start + self.batch_size]):
                return False
        self.spool.done(segment)
        self._progress.set()
        return True

    async def _write(self, rows: list[Row]) -> bool:
        try:
            await asyncio.to_thread(self.backend.write, rows)
        except BackendRejected as exc:
            if len(rows) > 1:
                # One bad row must not cost its batch: halve until the refused rows are alone.
                # Rewriting rows the database already took is harmless (same series and time).
                middle = len(rows) // 2
                return await self._write(rows[:middle]) and await self._write(rows[middle:])
            # Not retryable: the database will never take this row. Counted and logged, not kept.
            self.counters.rejected += 1
            self.last_error = str(exc)
            log.error("database refused a row (dropped): %s: %s", rows[0].measurement, exc)
            return True
        except Exception as exc:  # BackendDown, or a bug in a client library: keep the rows, retry
            if not isinstance(exc, BackendDown):
                log.exception("unexpected error writing to %s", self.backend.name)
            self.counters.write_failures += 1
            self.database_ok = False
            self._progress.set()
            self.last_error = str(exc)
            self._episode.failure(exc)
            return False
        self.counters.written += len(rows)
        self.database_ok = True
        self._episode.success()
        return True

    async def drained(self, timeout: float | None = None) -> None:
        """Wait until everything received so far is in the database (tests, shutdown)."""
        self._wake.set()
        await asyncio.wait_for(self._idle.wait(), timeout)

    # -- status ------------------------------------------------------------------------------

    def status(self) -> RecorderStatus:
        return RecorderStatus(
            ts=utc_now(),
            recorder=self.recorder_id,
            backend=self.backend.name,
            points_written=self.counters.written,
            points_spooled=self.spool.stats.appended_rows,
            backlog_points=self.spool.backlog_rows + len(self._memory),
            backlog_bytes=self.spool.backlog_bytes,
            points_lost=self.spool.stats.dropped_rows + self.counters.lost_rows,
            points_rejected=self.counters.rejected,
            database_ok=self.database_ok,
            last_error=(self.last_error or None) and self.last_error[:500],
        )
