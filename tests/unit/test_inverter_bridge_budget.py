"""The write budget's day roll-over and its file: survives a restart, refuses a corrupt file."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.inverter_bridge.budget import BudgetFileError, BudgetStore, WriteBudget

DAY = date(2026, 6, 1)


def test_counts_roll_over_at_the_utc_day() -> None:
    b = WriteBudget(2, DAY)
    b.record_write("passive_charge_w", DAY)
    b.record_write("passive_standby", DAY)
    assert not b.allows(DAY)
    with pytest.raises(RuntimeError, match="past the budget"):
        b.record_write("passive_charge_w", DAY)
    assert b.allows(date(2026, 6, 2)) and b.writes == {} and b.day == date(2026, 6, 2)


def test_file_round_trip_and_restart(tmp_path: Path) -> None:
    store = BudgetStore(tmp_path / "state" / "inverter-inv1-writes.json")
    b = store.load(5, DAY)
    b.record_write("passive_charge_w", DAY)
    b.record_skip(DAY)
    b.record_refusal(DAY)
    store.save(b)
    again = store.load(5, DAY)
    assert (again.writes, again.skipped_noop, again.refused_budget) == ({"passive_charge_w": 1}, 1, 1)
    # A new day starts fresh; a smaller configured budget applies at once.
    assert store.load(5, date(2026, 6, 2)).used == 0
    assert not store.load(1, DAY).allows(DAY)
    counters = again.counters("inv1", datetime(2026, 6, 1, 12, tzinfo=UTC))
    assert counters.writes == {"passive_charge_w": 1} and counters.budget_per_day == 5


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[]",
        '{"day": "x", "writes": {}}',
        '{"day": "2026-06-01", "writes": {"a": -1}}',
        '{"day": "2026-06-01", "writes": {"a": 1e999}}',  # JSON reads inf; int(inf) overflows
    ],
)
def test_a_corrupt_file_is_an_error_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "w.json"
    path.write_text(text)
    store = BudgetStore(path)
    with pytest.raises(BudgetFileError, match=r"w\.json"):
        store.load(5, DAY)
    aside = store.quarantine()
    assert aside.read_text() == text and not path.exists()


def test_a_file_that_is_not_text_is_an_error_naming_it(tmp_path: Path) -> None:
    # It must reach the service's quarantine (a BudgetFileError), not end the bridge at every start.
    path = tmp_path / "w.json"
    path.write_bytes(b'{"day": "2026-06-01", "writes": {"\xff": 1}}')
    store = BudgetStore(path)
    with pytest.raises(BudgetFileError, match=r"w\.json is not JSON: 'utf-8' codec"):
        store.load(5, DAY)
    assert store.quarantine().exists() and not path.exists()


@given(st.dictionaries(st.text(min_size=1, max_size=20), st.integers(0, 10_000), max_size=5),
       st.integers(0, 100), st.integers(0, 100))  # fmt: skip
def test_json_form_round_trips(writes: dict[str, int], skipped: int, refused: int) -> None:
    b = WriteBudget(10_000, DAY, dict(writes), skipped, refused)
    back = WriteBudget.from_json(json.loads(json.dumps(b.to_json())), 10_000, DAY)
    assert (back.writes, back.skipped_noop, back.refused_budget) == (writes, skipped, refused)
