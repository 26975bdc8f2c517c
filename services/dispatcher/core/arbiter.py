"""One arbiter for the battery and the flexible loads: who gets surplus, who may draw on the battery.

Where each CT sits matters. The grid CT sees the house, the battery and every flexible load; each
flexible load has its own CT. So the surplus (PV minus the base load, flexible loads left out) is
``sum(flexible) - grid - battery``, and it is shared out in priority order (lower number first;
the battery has ``battery_priority``). A grid-CT immersion diverter takes whatever the grid CT
shows as export: the controller therefore leaves the diverter's consumption out of the battery's
zero-grid target (``not_from_battery_w``) unless the diverter is allowed battery power, so the
battery never discharges into hot water. A heat pump may draw on the battery within a budget of Wh
per period and above its SoC floor; past either, its consumption is excluded too. Inside its run
window the heat pump's switch is its own rule's (``heat_pump.decide``), not the surplus's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.config.loads import DiverterLoad, EvLoad, HeatPumpLoad
from shared.energy import soc_limits

from . import heat_pump
from .heat_pump import Budget
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
    budgets: tuple[Budget, ...]
    budget_left_wh: dict[str, float]
    reasons: dict[str, str] = field(default_factory=dict)  # why each heat pump is on/off, fed or not


def arbitrate(
    snap: Snapshot,
    memory: Memory,
    params: ControlParams,
    *,
    battery_free: bool = True,
    band: tuple[bool, bool] | None = None,
) -> LoadsOutcome:
    """``battery_free``: the mode or the plan's step lets the battery discharge now (a heat pump in
    its window runs from the battery only then). ``band``: (discharge stopped at the reserve, charge
    stopped at the ceiling) as the controller decided them this call (``soc_limits.band_stops``);
    None: decided here the same way from ``memory.band_stopped``. The battery has no charging
    headroom while its charge is stopped and feeds no heat pump while its discharge is stopped, so
    the surplus and the heat pumps go where the controller's setpoint will send them."""
    if band is None:
        band = soc_limits.band_stops(params.battery, snap.soc_pct, memory.band_stopped)
    discharge_stopped, charge_stopped = band
    headroom = 0.0 if charge_stopped else params.battery.max_charge_w
    if not params.loads:
        return _battery_only(snap, memory, headroom)
    readings = {r.id: max(0.0, r.power_w) for r in snap.loads}
    metered = {r.id for r in snap.loads}
    flexible = sum(readings.get(load.id, 0.0) for load in params.loads)
    surplus = flexible - snap.grid_w - snap.battery_w
    was_on = dict(memory.loads_on)
    b = params.battery

    dt_s = 0.0 if memory.at is None else max(0.0, (snap.now - memory.at).total_seconds())
    budgets: dict[str, Budget] = {b.load: b for b in memory.budgets}
    reserve_pct = soc_limits.discharge_stops_at_pct(b)

    entities: list[tuple[int, int, object]] = [(params.battery_priority, 0, "battery")]
    entities += [(load.priority, 1, load) for load in params.loads]
    entities.sort(key=lambda item: (item[0], item[1]))

    remaining = surplus
    on: dict[str, bool] = {}
    battery_share = 0.0
    not_from_battery = 0.0
    budget_left: dict[str, float] = {}
    reasons: dict[str, str] = {}
    # The battery's discharge, shared out over the heat pumps in this order: what one was fed is
    # not counted against the next one's budget too (as the plan's ``battery_shares``).
    discharge_left = max(0.0, snap.battery_w)
    for _, _, entity in entities:
        if entity == "battery":
            battery_share = min(max(remaining, 0.0), headroom)
            remaining -= battery_share
            continue
        assert isinstance(entity, DiverterLoad | HeatPumpLoad | EvLoad)
        load = entity
        power = readings.get(load.id, 0.0)
        call = None
        if isinstance(load, HeatPumpLoad):
            call = heat_pump.decide(
                load,
                budgets.get(load.id),
                now=snap.now,
                timezone=params.timezone,
                soc_pct=snap.soc_pct,
                reserve_pct=reserve_pct,
                battery_w=discharge_left,
                power_w=power if load.id in metered else None,
                was_on=bool(was_on.get(load.id)),
                dt_s=dt_s,
                battery_free=battery_free and not discharge_stopped,
            )
            budgets[load.id] = call.budget
            discharge_left -= heat_pump.battery_fed_w(
                power if load.id in metered else None, discharge_left, bool(was_on.get(load.id))
            )
            budget_left[load.id] = call.left_wh
            reasons[load.id] = call.reason
        # ``remaining`` already counts this load's own consumption as surplus (its CT is in
        # ``flexible``), so a load that is on keeps its share; switching on needs a margin.
        if isinstance(load, EvLoad):
            threshold = load.min_power_w if not was_on.get(load.id) else load.min_power_w / 2
        else:
            threshold = params.surplus_on_w if not was_on.get(load.id) else 1.0
        # Inside its run window a heat pump's switch is its own rule's; elsewhere the surplus's.
        on[load.id] = call.on if call is not None and call.on is not None else remaining >= threshold
        if on[load.id]:
            remaining -= min(max(remaining, 0.0), load.rated_power_w)
        if call is not None:
            if not call.battery_feeds:
                # Without its own CT its draw is unknown: while it is on its rating is kept off the
                # battery, so the battery holds rather than feed it (it may still charge from surplus).
                not_from_battery += power if load.id in metered else (load.rated_power_w if on[load.id] else 0.0)
        elif isinstance(load, DiverterLoad | EvLoad) and not load.battery_may_feed:
            not_from_battery += power
    return LoadsOutcome(
        on=on,
        not_from_battery_w=not_from_battery,
        surplus_w=surplus,
        battery_share_w=battery_share,
        budgets=tuple(budgets[name] for name in sorted(budgets)),
        budget_left_wh=budget_left,
        reasons=reasons,
    )


def _battery_only(snap: Snapshot, memory: Memory, headroom: float) -> LoadsOutcome:
    """``arbitrate`` with no flexible loads configured (most houses; every step of a backtest
    without them): the battery alone, the same figures without the loop."""
    surplus = 0 - snap.grid_w - snap.battery_w  # as ``arbitrate``: an empty sum is the int 0
    budgets = {budget.load: budget for budget in memory.budgets}
    return LoadsOutcome(
        on={},
        not_from_battery_w=0.0,
        surplus_w=surplus,
        battery_share_w=min(max(surplus, 0.0), headroom),
        budgets=tuple(budgets[name] for name in sorted(budgets)),
        budget_left_wh={},
        reasons={},
    )
