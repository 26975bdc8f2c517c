"""The simulator's endpoint lines: once every device listens it prints one JSON object per
device on stdout (``{"device", "model", "protocol", "endpoint"}``), the ``control`` channel last."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["endpoint_map", "read_endpoints"]


def read_endpoints(
    process: subprocess.Popen[bytes], timeout: float = 60.0, log: Path | None = None
) -> list[dict[str, Any]]:
    """Every endpoint line, up to and including ``control``.

    Reads the pipe without blocking past ``timeout``; raises ``RuntimeError`` (with the tail of
    ``log``, when given) if the simulator exits or stays silent. Nothing is left buffered: the
    simulator prints nothing after ``control``.
    """
    assert process.stdout is not None, "start the simulator with its stdout piped"
    fd = process.stdout.fileno()
    endpoints: list[dict[str, Any]] = []
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            chunk = os.read(fd, 65536) if selector.select(min(left, 0.5)) else None
            if chunk == b"" or (chunk is None and process.poll() is not None):
                tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
                raise RuntimeError(f"the simulator exited during start-up (status {process.poll()}): {tail}")
            buffer += chunk or b""
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and "device" in entry:
                    endpoints.append(entry)
                    if entry["device"] == "control":
                        return endpoints
    raise RuntimeError(f"the simulator announced no control endpoint within {timeout:.0f} s")


def endpoint_map(endpoints: list[dict[str, Any]]) -> dict[str, str]:
    """Device id -> endpoint (``tcp://host:port``, a pty path, ``http://...`` for control)."""
    return {entry["device"]: entry["endpoint"] for entry in endpoints}
