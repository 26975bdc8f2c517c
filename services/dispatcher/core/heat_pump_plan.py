"""The plan around the heat pumps: battery energy to a heat pump only as the dispatcher will give it.

The planner is given each heat pump's expected draw (``heat_pump.expected_draw_w``) as load. The
dispatcher lets the battery cover that draw only while the heat pump's budget lasts and the SoC is
above its floor (``heat_pump.decide``: the load's ``min_soc_pct``, never below the reserve, with
``FLOOR_HYSTERESIS_PCT`` to resume). Past either, ``after_budget: grid`` keeps it on from the grid
(its draw is left out of the battery's target) and ``off`` switches it off. A plan that covered the
draw from the battery down to the reserve would plan energy the battery will not give (and leave
the evening short of what it planned).

``plan_with_heat_pumps`` therefore plans twice at most: first with the draws as load; then, walking
that plan's SoC path and battery power step by step as the dispatcher would, each heat pump's draw
beyond its budget or below its floor becomes load the battery must not cover
(``PlanInputs.no_battery_w``) under ``grid``, or no load at all under ``off`` (switched off); if
anything changed the plan is made again with that. The walk counts the budget as the dispatcher
does with the heat pump's own CT: the smaller of its draw and the battery's planned discharge.
One refinement, not a fixed point: the second plan's SoC path can differ from the first's, and
the walk is not repeated (the next plan, minutes later, starts from the SoC the battery reached).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from shared.config.loads import HeatPumpLoad

from .heat_pump import _periods, _window_mask, _zone, above_floor, battery_fed_w
from .planner import PlanInputs, Schedule

__all__ = ["HeatPumpDraw", "battery_share", "battery_shares", "plan_with_heat_pumps"]


@dataclass(frozen=True, eq=False)
class HeatPumpDraw:
    """One heat pump's expected draw per plan step (W, already in the plan's load), the battery
    energy it used in the budget period in force (Wh) and whether the battery fed it at the
    dispatcher's last call (``Budget.feeding``: the floor's hysteresis; False before any call, as
    ``heat_pump.decide`` starts)."""

    load: HeatPumpLoad
    draw_w: np.ndarray
    used_wh: float = 0.0
    feeding: bool = False


def battery_share(
    hp: HeatPumpDraw,
    starts: pd.DatetimeIndex,
    step_s: int,
    timezone: str,
    soc_pct_start: float,
    soc_pct_end: np.ndarray,
    discharge_w: np.ndarray,
    reserve_pct: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(its draw as the dispatcher will let it run, the part of that the battery will not cover,
    the part the battery covers), W per step, along a planned SoC path with ``discharge_w`` of the
    battery's discharge left for it (see the module docstring)."""
    load = hp.load
    n = len(hp.draw_w)
    draw = np.asarray(hp.draw_w, dtype=float).copy()
    excluded = np.zeros(n)
    fed = np.zeros(n)
    local = starts.tz_convert(_zone(timezone))
    inside = _window_mask(load.run_window, local) if load.run_window is not None else np.zeros(n, dtype=bool)
    periods = _periods(load, local)
    budget = load.battery_budget_kwh * 1000.0
    dt_h = step_s / 3600.0
    used = hp.used_wh
    period = int(periods[0]) if n else 0
    feeding = hp.feeding
    soc = soc_pct_start
    for t in range(n):
        if int(periods[t]) != period:
            period, used = int(periods[t]), 0.0
        feeding = above_floor(load, reserve_pct, soc, feeding)
        if used < budget and feeding:
            fed[t] = battery_fed_w(float(draw[t]), float(discharge_w[t]), was_on=True)
            used += fed[t] * dt_h
        elif draw[t] > 0:
            if inside[t] and load.after_budget == "off":
                draw[t] = 0.0  # switched off: no load
            else:
                excluded[t] = draw[t]  # on from the grid (or PV): not the battery's to cover
        soc = float(soc_pct_end[t])
    return draw, excluded, fed


def battery_shares(
    heat_pumps: Sequence[HeatPumpDraw],
    starts: pd.DatetimeIndex,
    step_s: int,
    timezone: str,
    soc_pct_start: float,
    soc_pct_end: np.ndarray,
    battery_w: np.ndarray,
    reserve_pct: float,
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """``battery_share`` of each heat pump (in the order given), the battery's one discharge shared
    out in the dispatcher's order (lower ``priority`` first, the configuration's order on a tie, as
    the arbiter's): what one heat pump takes is not there for the next, so no Wh is counted
    against two budgets."""
    left = np.maximum(np.asarray(battery_w, dtype=float), 0.0)
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i in sorted(range(len(heat_pumps)), key=lambda i: heat_pumps[i].load.priority):
        draw, excluded, fed = battery_share(
            heat_pumps[i], starts, step_s, timezone, soc_pct_start, soc_pct_end, left, reserve_pct
        )
        left = left - fed
        out[i] = (draw, excluded)
    return tuple(out[i] for i in range(len(heat_pumps)))


def plan_with_heat_pumps(
    inputs: PlanInputs,
    heat_pumps: Sequence[HeatPumpDraw],
    timezone: str,
    solve: Callable[..., Schedule],
    **kwargs: object,
) -> Schedule:
    """``solve(inputs, **kwargs)`` (``planner.plan``), with each heat pump's draw as the dispatcher
    will let the battery feed it (see the module docstring). ``first_step_only`` applies to the
    final plan only: the walk needs the first plan's whole SoC path."""
    if not heat_pumps:
        return solve(inputs, **kwargs)
    first = solve(inputs, **{**kwargs, "first_step_only": False})
    starts = pd.date_range(inputs.start, periods=inputs.steps, freq=f"{inputs.step_s}s")
    reserve = inputs.battery.reserve_pct
    total_cut = np.zeros(inputs.steps)
    excluded = np.zeros(inputs.steps)
    shares = battery_shares(
        heat_pumps, starts, inputs.step_s, timezone, inputs.soc_pct, first.soc_pct_end, first.battery_w, reserve
    )
    for hp, (draw, out) in zip(heat_pumps, shares, strict=True):
        total_cut += np.asarray(hp.draw_w, dtype=float) - draw
        excluded += out
    if not total_cut.any() and not excluded.any():
        return first  # step 0 is the same whether or not the whole plan was asked for
    load_s = inputs.load_scenarios_w
    again = replace(
        inputs,
        load_w=np.maximum(0.0, inputs.load_w - total_cut),
        load_scenarios_w=None if load_s is None else np.maximum(0.0, load_s - total_cut),
        no_battery_w=excluded if inputs.no_battery_w is None else inputs.no_battery_w + excluded,
    )
    return solve(again, **kwargs)
