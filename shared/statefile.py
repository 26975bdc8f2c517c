"""Small JSON state files a service keeps across a restart (the dispatcher's history and heat pump
budgets, the inverter bridge's write counters), read and written one way.

A versioned file is one JSON object whose ``version`` is the format's version. Writing is atomic:
the text goes to ``<name>.tmp`` beside the file, which is then renamed over it, so a crash leaves
the old file or the new one, never half of one. A missing file reads as ``None`` (nothing saved
yet); a file that cannot be read, is not JSON, or is not an object of the expected version raises
``StateFileError`` (or the caller's subclass of it) naming the file and the problem; the caller
decides whether to move it aside and start afresh.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["StateFileError", "parse_versioned", "read_versioned", "versioned_json", "write_atomic", "write_versioned"]


class StateFileError(ValueError):
    """A state file exists but cannot be used; the message names the file and the problem."""


def write_atomic(path: Path, text: str, *, fsync: bool = False) -> None:
    """Replace ``path`` by ``text`` through ``<name>.tmp`` and a rename (parents are made).

    ``fsync`` flushes the text to disk before the rename, so a power cut cannot leave the new name
    on an empty file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)


def versioned_json(version: int, body: dict[str, Any]) -> str:
    """``body`` as a JSON object with ``version`` first."""
    return json.dumps({"version": version, **body})


def parse_versioned(
    text: str, version: int, what: str, *, source: str, error: type[StateFileError] = StateFileError
) -> dict[str, Any]:
    """The JSON object in ``text`` (read from ``source``), checked to be a version ``version`` ``what``."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise error(f"{source}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != version:
        raise error(f"{source}: not a version {version} {what}")
    return data


def read_versioned(
    path: Path, version: int, what: str, *, error: type[StateFileError] = StateFileError
) -> dict[str, Any] | None:
    """The file's object (see ``parse_versioned``), or None when there is no file yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:  # a ValueError, not an OSError: bytes that are not text
        raise error(f"{path}: not JSON ({exc})") from None
    return parse_versioned(text, version, what, source=str(path), error=error)


def write_versioned(path: Path, version: int, body: dict[str, Any]) -> None:
    """``versioned_json(version, body)`` written atomically to ``path``."""
    write_atomic(path, versioned_json(version, body))
