"""What a backend promises, and the two ways a write fails."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..rows import FieldValue, Row
from ..views import Query


class BackendError(Exception):
    """A write or read that did not happen; the message names the database and the cause."""


class BackendDown(BackendError):
    """Unreachable, timing out, 5xx, refusing credentials: keep the rows and retry later."""


class BackendRejected(BackendError):
    """The database refused the data (bad type, bad name): retrying the same rows cannot help."""


@dataclass(frozen=True)
class StoredPoint:
    ts_ns: int
    tags: dict[str, str]
    fields: dict[str, FieldValue] = field(default_factory=dict)


Series = dict[str, list[tuple[int, float]]]


class Backend(Protocol):
    name: str

    def write(self, rows: Sequence[Row]) -> None: ...

    def close(self) -> None: ...


class Reader(Protocol):
    name: str

    def points(
        self, measurement: str, start_ns: int, end_ns: int, where: dict[str, str] | None = None
    ) -> list[StoredPoint]:
        """Every point of a measurement in ``[start_ns, end_ns)``, oldest first."""
        ...

    def aggregate(self, query: Query, site: str, start_ns: int, end_ns: int, every_s: int) -> Series:
        """Bucketed values ``{series label: [(bucket start ns, value)]}``, as a dashboard panel shows them."""
        ...

    def close(self) -> None: ...
