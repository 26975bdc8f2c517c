"""A durable on-disk spool: the recorder's write-ahead log.

Every row is appended here *before* any database write is tried, so what the recorder has taken
off the broker survives a database outage, a recorder crash and a restart. Rows go to an open
segment file (``<seq>.open``, one row a line in InfluxDB line protocol: the very text the
database is sent, so a row is serialised once; segments of older recorders, one JSON object a
line, are still read); ``seal()`` fsyncs it and renames it to
``<seq>.seg`` (atomic). Sealed segments are written to the database oldest first and deleted only
after the database said yes. A crash between "written" and "deleted" replays the segment: the rows
carry their series and time, so the database overwrites them instead of doubling them.

Bounded: when the sealed segments exceed ``max_bytes`` the *oldest* are dropped (logged, counted),
so a long outage keeps the most recent data. A torn last line (power loss mid-write) is skipped.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from shared.logs import get_logger

from .rows import Row

log = get_logger("recorder.spool")

OPEN = ".open"
SEALED = ".seg"
# Rows kept in memory (the newest segments, as appended) so that writing them needs no re-read.
# Older segments are read back from disk when their turn comes (after a database outage). Also
# the backlog past which the recorder's handler waits for the database (pipeline.Recorder._room):
# room for the bus's read-ahead (5,000 messages) and four segments being written.
CACHED_ROWS = 10_000


class SpoolError(OSError):
    """The spool could not be written (full disk, read-only file system); the message says where."""


@dataclass
class SpoolStats:
    appended_rows: int = 0
    dropped_rows: int = 0
    dropped_segments: int = 0
    torn_lines: int = 0


@dataclass
class Segment:
    path: Path
    rows: int
    bytes: int
    # The rows as appended, kept only for the newest segments so the happy path never re-reads disk.
    cached: list[Row] | None = field(default=None, repr=False)


def _seq(path: Path) -> int:
    return int(path.name.split(".", 1)[0])


class Spool:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.stats = SpoolStats()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create spool directory {self.dir}: {exc.strerror or exc}") from exc
        self._sealed: list[Segment] = []
        self._open_file: BinaryIO | None = None
        self._open_path: Path | None = None
        self._open_rows: list[Row] = []
        self._open_bytes = 0
        self._next_seq = 0
        self._recover()

    # -- start-up ----------------------------------------------------------------------------

    def _recover(self) -> None:
        """Seal what a previous run left open; count what waits for replay."""
        candidates = [p for p in self.dir.iterdir() if p.suffix in (OPEN, SEALED)]
        strays = [p for p in candidates if not p.name.split(".", 1)[0].isdigit()]
        for stray in strays:
            # Not one of ours (a copy, an editor's backup): leave it alone rather than refuse to start.
            log.warning("spool: ignoring %s, not a segment name", stray)
        paths = sorted((p for p in candidates if p not in strays), key=_seq)
        for path in paths:
            if path.suffix == OPEN:
                target = path.with_suffix(SEALED)
                os.replace(path, target)
                path = target
            # Counted by newlines: exact except for a string field holding a newline, which counts
            # twice here until the segment is read (cheap at start-up, whatever the backlog).
            rows = path.read_bytes().count(b"\n")
            self._sealed.append(Segment(path, rows, path.stat().st_size))
        self._next_seq = (_seq(paths[-1]) + 1) if paths else 0
        if self._sealed:
            log.info(
                "spool holds %d rows in %d segments from before; replaying oldest first",
                self.backlog_rows,
                len(self._sealed),
            )

    # -- writing -----------------------------------------------------------------------------

    def append(self, rows: list[Row]) -> None:
        """Append rows to the open segment (in the OS's hands on return; fsync happens on seal)."""
        if not rows:
            return
        data = "".join([row.line + "\n" for row in rows]).encode()
        try:
            if self._open_file is None:
                self._open_path = self.dir / f"{self._next_seq:012d}{OPEN}"
                self._next_seq += 1
                self._open_file = open(self._open_path, "ab")  # kept open across appends
            handle = self._open_file
            handle.write(data)
            handle.flush()
        except OSError as exc:
            raise SpoolError(f"cannot append to spool {self._open_path}: {exc.strerror or exc}") from exc
        self._open_rows.extend(rows)
        self._open_bytes += len(data)
        self.stats.appended_rows += len(rows)

    @property
    def open_rows(self) -> int:
        return len(self._open_rows)

    def seal(self) -> Segment | None:
        """Make the open segment durable and ready to replay. Nothing open: ``None``."""
        if self._open_file is None or self._open_path is None:
            return None
        handle = self._open_file
        path = self._open_path
        try:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            target = path.with_suffix(SEALED)
            os.replace(path, target)
            self._fsync_dir()
        except OSError as exc:
            raise SpoolError(f"cannot seal spool segment {path}: {exc.strerror or exc}") from exc
        finally:
            self._open_file = None
            self._open_path = None
        segment = Segment(target, len(self._open_rows), self._open_bytes, cached=self._open_rows)
        self._open_rows = []
        self._open_bytes = 0
        self._sealed.append(segment)
        self._enforce_bound()
        return segment

    def _fsync_dir(self) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _enforce_bound(self) -> None:
        while self._sealed and self.backlog_bytes > self.max_bytes and len(self._sealed) > 1:
            oldest = self._sealed.pop(0)
            self.stats.dropped_rows += oldest.rows
            self.stats.dropped_segments += 1
            with contextlib.suppress(FileNotFoundError):
                oldest.path.unlink()
            log.error(
                "spool over its bound of %.1f MB: dropped the oldest %d rows (%s)",
                self.max_bytes / 1e6,
                oldest.rows,
                oldest.path.name,
            )
        # Keep memory bounded under a backlog: only the newest segments, up to CACHED_ROWS, stay cached
        # (The two newest always: one being written while the next fills.)
        kept = 0
        for newest, segment in enumerate(reversed(self._sealed)):
            if segment.cached is None:
                continue
            kept += segment.rows
            if kept > CACHED_ROWS and newest >= 2:
                segment.cached = None

    # -- replay ------------------------------------------------------------------------------

    @property
    def segments(self) -> list[Segment]:
        return list(self._sealed)

    def read(self, segment: Segment) -> list[Row]:
        if segment.cached is not None:
            return segment.cached
        text = segment.path.read_text(errors="replace")
        rows: list[Row] = []
        pos = 0
        while pos < len(text):
            if text[pos] == "\n":
                pos += 1
                continue
            try:
                if text[pos] == "{":  # written by an older recorder: one JSON object a line
                    end = text.find("\n", pos)
                    end = len(text) if end < 0 else end
                    rows.append(Row.from_json(text[pos:end]))
                    pos = end + 1
                else:
                    row, pos = Row.from_line(text, pos)
                    rows.append(row)
            except (ValueError, KeyError, TypeError):
                # A line torn by power loss; the rest of the segment is still good.
                self.stats.torn_lines += 1
                log.warning("skipped a torn line in spool segment %s", segment.path.name)
                end = text.find("\n", pos)
                pos = len(text) if end < 0 else end + 1
        return rows

    def done(self, segment: Segment) -> None:
        """The database has the segment: forget it."""
        with contextlib.suppress(ValueError):
            self._sealed.remove(segment)
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()

    @property
    def backlog_rows(self) -> int:
        return sum(s.rows for s in self._sealed) + len(self._open_rows)

    @property
    def backlog_bytes(self) -> int:
        return sum(s.bytes for s in self._sealed) + self._open_bytes

    def close(self) -> None:
        if self._open_file is not None:
            with contextlib.suppress(SpoolError):
                self.seal()
