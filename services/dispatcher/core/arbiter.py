"""One arbiter for the battery and the flexible loads: who gets surplus, who may draw on the battery.

Where each CT sits matters. The grid CT sees the house, the battery and every flexible load; each
flexible load has its own CT. So the surplus (PV minus the base load, flexible loads left out) is
``sum(flexible) - grid - battery``, and it is shared out in priority order (lower number first;
the battery has ``battery_priority``). A grid-CT immersion diverter takes whatever the grid CT
shows as export: the controller therefore leaves the diverter's consumption out of the battery's
zero-grid target (``not_from_battery_w``) unless the diverter is allowed battery power, so the
battery never discharges into hot water. A heat pump may draw on the battery within a budget of Wh
per period and above its SoC floor; past either, its consumption is excluded too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.config.loads import DiverterLoad, EvLoad, HeatPumpLoad
from shared.energy import soc_limits

from .snapshot import Snapshot

if TYPE_CHECKING:
    from .controller import ControlParams, Memory

__all__ = ["LoadsOutcome", "arbitrate"]


@dataclass(frozen=True)
class LoadsOutcome:
    on: dict[str, bool]
    not_from_battery_w: float  # flexible consumption the battery must not cover
    surplus_w: float  # PV minus base load (flexible loads left out)
    battery_share_w: float  # surplus the battery may charge from, after higher-priority loads
    budgets: tuple[tuple[str, datetime, float], ...]
    budget_left_wh: dict[str, float]


def arbitrate(snap: Snapshot, memory: Memory, params: ControlParams) -> LoadsOutcome:
    readings = {r.id: max(0.0, r.power_w) for r in snap.loads}
    flexible = sum(readings.get(load.id, 0.0) for load in params.loads)
    surplus = flexible - snap.grid_w - snap.battery_w
    was_on = dict(memory.loads_on)
    b = params.battery
    headroom = b.max_charge_w if soc_limits.may_charge(b, snap.soc_pct) else 0.0

    dt_s = 0.0 if memory.at is None else max(0.0, (snap.now - memory.at).total_seconds())
    budgets: dict[str, tuple[datetime, float]] = {name: (start, used) for name, start, used in memory.budgets}

    entities: list[tuple[int, int, object]] = [(params.battery_priority, 0, "battery")]
    entities += [(load.priority, 1, load) for load in params.loads]
    entities.sort(key=lambda item: (item[0], item[1]))

    remaining = surplus
    on: dict[str, bool] = {}
    battery_share = 0.0
    not_from_battery = 0.0
    budget_left: dict[str, float] = {}
    for _, _, entity in entities:
        if entity == "battery":
            battery_share = min(max(remaining, 0.0), headroom)
            remaining -= battery_share
            continue
        assert isinstance(entity, DiverterLoad | HeatPumpLoad | EvLoad)
        load = entity
        power = readings.get(load.id, 0.0)
        # ``remaining`` already counts this load's own consumption as surplus (its CT is in
        # ``flexible``), so a load that is on keeps its share; switching on needs a margin.
        if isinstance(load, EvLoad):
            threshold = load.min_power_w if not was_on.get(load.id) else load.min_power_w / 2
        else:
            threshold = params.surplus_on_w if not was_on.get(load.id) else 1.0
        on[load.id] = remaining >= threshold
        if on[load.id]:
            remaining -= min(remaining, load.rated_power_w)
        if isinstance(load, HeatPumpLoad):
            start, used = budgets.get(load.id, (snap.now, 0.0))
            if snap.now - start >= timedelta(hours=load.budget_period_hours):
                start, used = snap.now, 0.0
            # Energy the battery gave the heat pump since the last call (discharge beyond the rest).
            fed = min(power, max(0.0, snap.battery_w)) * dt_s / 3600.0
            used += fed
            left = load.battery_budget_kwh * 1000.0 - used
            budgets[load.id] = (start, used)
            budget_left[load.id] = max(0.0, left)
            if left <= 0 or snap.soc_pct <= load.min_soc_pct:
                not_from_battery += power
        elif not load.battery_may_feed:
            not_from_battery += power
    return LoadsOutcome(
        on=on,
        not_from_battery_w=not_from_battery,
        surplus_w=surplus,
        battery_share_w=battery_share,
        budgets=tuple((name, start, used) for name, (start, used) in sorted(budgets.items())),
        budget_left_wh=budget_left,
    )
