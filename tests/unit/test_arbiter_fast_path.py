"""The arbiter's battery-only path (no flexible load configured) against its general loop.

``arbitrate`` skips its per-load loop when ``params.loads`` is empty (every call of a backtest
without flexible loads). Forcing the loop with a load list that is empty but truthy must give the
same outcome, field by field, on any reading.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher.core.arbiter import arbitrate
from services.dispatcher.core.controller import ControlParams, Memory
from services.dispatcher.core.heat_pump import Budget
from services.dispatcher.core.snapshot import ModeState, Snapshot
from shared.energy.battery import BatteryModel

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
BATTERY = BatteryModel(
    capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000, floor_pct=10, reserve_pct=20, ceiling_pct=97
)
PARAMS = ControlParams(battery=BATTERY)


class _NoLoadsButLoop(tuple):  # type: ignore[type-arg]
    """No loads, yet truthy: ``arbitrate`` runs its general loop over nothing."""

    def __bool__(self) -> bool:
        return True


def _budget_memory(names: list[str]) -> Memory:
    return Memory(budgets=tuple(Budget(name, T0, used_wh=100.0) for name in names))


@settings(max_examples=300, deadline=None)
@given(
    soc=st.floats(0, 100),
    battery=st.floats(-3000, 3000) | st.sampled_from([0.0, -0.0]),
    grid=st.floats(-8000, 8000) | st.sampled_from([0.0, -0.0]),
    names=st.lists(st.sampled_from(["b", "a", "c"]), unique=True, max_size=3),
    seen=st.booleans(),
)
def test_battery_only_path_equals_the_loop(
    soc: float, battery: float, grid: float, names: list[str], seen: bool
) -> None:
    now = T0 + timedelta(minutes=5)
    snap = Snapshot(
        now=now, soc_pct=soc, battery_w=battery, grid_w=grid, mode=ModeState(), inverter_at=now, meter_at=now
    )
    memory = dataclasses.replace(_budget_memory(names), at=T0 if seen else None)
    fast = arbitrate(snap, memory, PARAMS)
    loop = arbitrate(snap, memory, dataclasses.replace(PARAMS, loads=_NoLoadsButLoop()))
    assert dataclasses.asdict(fast) == dataclasses.asdict(loop)
    # The same floats to the sign of a zero.
    assert repr(fast.surplus_w) == repr(loop.surplus_w) and repr(fast.battery_share_w) == repr(loop.battery_share_w)
