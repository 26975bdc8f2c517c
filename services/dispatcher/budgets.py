"""The heat pumps' battery budgets kept across a restart: a dispatcher restarted at 20:00 must not
hand a heat pump a second 1.8 kWh for the same night.

A small versioned JSON file under ``dispatcher.state_dir`` (``shared.statefile``), written
atomically (temp file and rename) when a budget has moved by ``SAVE_EVERY_WH`` since the last
write, when a period starts, and at shutdown.
A file that cannot be read raises ``BudgetFileError`` naming the file; the service moves it aside
and starts with fresh budgets.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from shared.statefile import StateFileError, read_versioned, write_versioned

from .core.heat_pump import Budget

__all__ = ["SAVE_EVERY_WH", "BudgetFileError", "load_budgets", "save_budgets", "save_due"]

FORMAT_VERSION = 1
# At most this much budget use is forgotten by a crash (a restart forgets nothing).
SAVE_EVERY_WH = 50.0


class BudgetFileError(StateFileError):
    """The budgets file exists but cannot be used; the message names the file and the problem."""


def save_due(saved: tuple[Budget, ...], now: tuple[Budget, ...]) -> bool:
    before = {b.load: b for b in saved}
    for budget in now:
        last = before.get(budget.load)
        if last is None or last.period_start != budget.period_start:
            return True
        if abs(budget.used_wh - last.used_wh) >= SAVE_EVERY_WH or budget.feeding != last.feeding:
            return True
    return False


def save_budgets(path: Path, budgets: tuple[Budget, ...]) -> None:
    rows = [
        {"load": b.load, "period_start": b.period_start.isoformat(), "used_wh": round(b.used_wh, 3),
         "feeding": b.feeding}
        for b in budgets
    ]  # fmt: skip
    write_versioned(path, FORMAT_VERSION, {"budgets": rows})


def load_budgets(path: Path) -> tuple[Budget, ...]:
    """The saved budgets, or none when there is no file yet. Raises BudgetFileError."""
    data = read_versioned(path, FORMAT_VERSION, "heat pump budgets file", error=BudgetFileError)
    if data is None:
        return ()
    rows = data.get("budgets", [])
    if not isinstance(rows, list):
        raise BudgetFileError(f"{path}: budgets is not a list: {rows!r}")
    out: list[Budget] = []
    for i, row in enumerate(rows):
        try:
            start = datetime.fromisoformat(row["period_start"])
            budget = Budget(str(row["load"]), start, float(row["used_wh"]), bool(row["feeding"]))
        except (TypeError, ValueError, KeyError):
            shape = "{load, period_start, used_wh, feeding}"
            raise BudgetFileError(f"{path}: budget {i} is not {shape}: {row!r}") from None
        if start.tzinfo is None or not budget.used_wh >= 0:
            raise BudgetFileError(f"{path}: budget {i} has a naive period_start or a bad used_wh: {row!r}")
        out.append(budget)
    return tuple(out)
