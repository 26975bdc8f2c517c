"""When a probe last found a CT-driven diverter taking the battery's discharge, kept across a
restart (``core.diverter_guard``: a house where a probe found the diverter within the last day
probes a load's drop at once; a restarted dispatcher that forgot it would wait for the slower
probes to find it again while the battery drains into the tank).

A small versioned JSON file under ``dispatcher.state_dir`` (``shared.statefile``), written
atomically whenever the time changes (at most once per probe that finds the diverter). A file
that cannot be read raises ``DiverterFileError`` naming the file; the service moves it aside and
starts as if the diverter had not been seen. A time after ``now`` (written while the clock was
ahead, or by an accelerated simulator run sharing the state directory) is ignored with a warning
naming the file and the time: kept, it would count the house as known to have a diverter until
real time passed it plus a day.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from shared.logs import get_logger
from shared.statefile import StateFileError, read_versioned, write_versioned

__all__ = ["DiverterFileError", "load_seen", "save_seen"]

FORMAT_VERSION = 1

log = get_logger("dispatcher")


class DiverterFileError(StateFileError):
    """The diverter file exists but cannot be used; the message names the file and the problem."""


def save_seen(path: Path, seen_at: datetime) -> None:
    write_versioned(path, FORMAT_VERSION, {"seen_at": seen_at.isoformat()})


def load_seen(path: Path, now: datetime) -> datetime | None:
    """When a probe last found the diverter, or None (no file yet, or a time after ``now``, which
    is logged). Raises DiverterFileError."""
    data = read_versioned(path, FORMAT_VERSION, "diverter file", error=DiverterFileError)
    if data is None:
        return None
    raw = data.get("seen_at")
    try:
        seen = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        seen = None
    if seen is None or seen.tzinfo is None:
        raise DiverterFileError(f"{path}: seen_at is not an ISO time with an offset: {raw!r}")
    if seen > now:
        log.warning(
            "%s: seen_at %s is after now (%s); ignored, the diverter not yet seen",
            path, seen.isoformat(), now.isoformat(),
        )  # fmt: skip
        return None
    return seen
