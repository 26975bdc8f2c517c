"""Structured logging: every line names the service, and the device and topic when there is one.

``text`` is for people at a terminal; ``json`` (one object per line) is for Loki/journald. Pass
context through ``extra``: ``log.warning("poll failed", extra={"device": "inv1"})``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_CONTEXT_KEYS = ("service", "device", "topic")
_service_name = "ongrid"


class _ServiceFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "service"):
            record.service = _service_name
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
        context = " ".join(
            f"{key}={getattr(record, key)}" for key in _CONTEXT_KEYS[1:] if getattr(record, key, None)
        )
        line = f"{stamp} {record.levelname:<7} {getattr(record, 'service', _service_name)}: {record.getMessage()}"
        if context:
            line += f" [{context}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(service: str, level: str = "INFO", fmt: str = "text") -> None:
    global _service_name
    _service_name = service
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ServiceFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The MQTT and Modbus libraries are chatty at INFO; their failures reach us as exceptions anyway.
    for noisy in ("pymodbus", "aiomqtt", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"ongrid.{name}")


class EpisodeLog:
    """Log a failure once when it starts and once when it ends, not on every poll in between."""

    def __init__(self, log: logging.Logger, what: str, **context: Any) -> None:
        self._log = log
        self._what = what
        self._context = context
        self._failing_since: datetime | None = None
        self.failures = 0

    def failure(self, error: object) -> bool:
        """Record a failure; returns True when this opens a new episode."""
        self.failures += 1
        if self._failing_since is None:
            self._failing_since = datetime.now(UTC)
            self._log.warning("%s failing: %s", self._what, error, extra=self._context)
            return True
        return False

    def success(self) -> bool:
        """Record a success; returns True when this closes an episode."""
        if self._failing_since is None:
            self.failures = 0
            return False
        lasted = (datetime.now(UTC) - self._failing_since).total_seconds()
        self._log.info(
            "%s recovered after %.1f s (%d failed attempts)", self._what, lasted, self.failures, extra=self._context
        )
        self._failing_since = None
        self.failures = 0
        return True
