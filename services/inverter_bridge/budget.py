"""The write budget: inverter flash wears out, so register writes are counted and capped per day.

``WriteBudget`` is pure (counts, the day roll-over, the JSON form); ``BudgetStore`` keeps it in a
small JSON file so a restart (or a crash loop) cannot reset the count. Days are UTC days.

Every write put on the wire counts (accepted by the inverter or not): the cell may have been
written either way. Heartbeats (0x49) are not register writes and do not count.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from shared.messages import WriteCounters
from shared.statefile import write_atomic


class BudgetFileError(ValueError):
    """The counter file exists but cannot be read as one."""


@dataclass
class WriteBudget:
    budget_per_day: int
    day: date
    writes: dict[str, int] = field(default_factory=dict)
    skipped_noop: int = 0
    refused_budget: int = 0

    def __post_init__(self) -> None:
        if self.budget_per_day < 1:
            raise ValueError(f"budget_per_day must be >= 1, got {self.budget_per_day}")

    def roll(self, today: date) -> None:
        """A new day starts with a fresh budget."""
        if today != self.day:
            self.day = today
            self.writes = {}
            self.skipped_noop = 0
            self.refused_budget = 0

    @property
    def used(self) -> int:
        return sum(self.writes.values())

    def left(self, today: date) -> int:
        self.roll(today)
        return max(0, self.budget_per_day - self.used)

    def allows(self, today: date) -> bool:
        return self.left(today) > 0

    def record_write(self, register: str, today: date) -> None:
        self.roll(today)
        if self.used >= self.budget_per_day:
            raise RuntimeError(f"write to {register} past the budget of {self.budget_per_day}/day")
        self.writes[register] = self.writes.get(register, 0) + 1

    def record_skip(self, today: date) -> None:
        self.roll(today)
        self.skipped_noop += 1

    def record_refusal(self, today: date) -> None:
        self.roll(today)
        self.refused_budget += 1

    def counters(self, device: str, ts: datetime) -> WriteCounters:
        return WriteCounters(
            ts=ts,
            device=device,
            day=self.day,
            writes=dict(self.writes),
            skipped_noop=self.skipped_noop,
            refused_budget=self.refused_budget,
            budget_per_day=self.budget_per_day,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "writes": dict(sorted(self.writes.items())),
            "skipped_noop": self.skipped_noop,
            "refused_budget": self.refused_budget,
        }

    @classmethod
    def from_json(cls, data: Any, budget_per_day: int, today: date) -> WriteBudget:
        """Counts from a file; the configured budget wins over whatever was in force then."""
        try:
            day = date.fromisoformat(data["day"])
            writes = {str(k): int(v) for k, v in data["writes"].items()}
            skipped, refused = int(data.get("skipped_noop", 0)), int(data.get("refused_budget", 0))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:  # int(1e999)
            raise BudgetFileError(f"write counter data {data!r:.200} is not valid: {exc}") from None
        if any(v < 0 for v in writes.values()):
            raise BudgetFileError(f"write counts {writes} contain a negative number")
        budget = cls(budget_per_day, day, writes, skipped, refused)
        budget.roll(today)
        return budget


class BudgetStore:
    """One JSON file per inverter, replaced atomically so a crash never leaves half a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, budget_per_day: int, today: date) -> WriteBudget:
        """The saved counts, or a fresh budget when there is no file. A corrupt file is an error."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return WriteBudget(budget_per_day, today)
        except UnicodeDecodeError as exc:  # a ValueError, not an OSError: bytes that are not text
            raise BudgetFileError(f"{self.path} is not JSON: {exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BudgetFileError(f"{self.path} is not JSON: {exc}") from None
        try:
            return WriteBudget.from_json(data, budget_per_day, today)
        except BudgetFileError as exc:
            raise BudgetFileError(f"{self.path}: {exc}") from None

    def save(self, budget: WriteBudget) -> None:
        write_atomic(self.path, json.dumps(budget.to_json()), fsync=True)

    def quarantine(self) -> Path:
        """Move a corrupt file aside (kept for a person to look at) and return where it went."""
        aside = self.path.with_name(self.path.name + ".corrupt")
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, aside)
        return aside
