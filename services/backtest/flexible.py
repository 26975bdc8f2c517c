"""Flexible loads in the backtest: one interface for every kind the dispatcher arbitrates.

Per data step the engine asks each load what it draws over the step (``draw_w``: given the switch
the dispatcher last set and the grid the grid CT showed at the step before), adds it to the data's
load (the house's base load), shows the loads that have their own CT (``config.meter``) to the
controller as ``LoadReading``s, and takes the switches from the decision. A switch decided at one
step acts from the next, as a battery setpoint does. ``FlexTally`` keeps each load's energy and
the share of it the battery gave.

Kinds modelled here: ``heat_pump`` (``HeatPumpDemand``). Its demand while switched on is the data's
``heat_pump_w`` column (what it draws when it runs, e.g. its own CT while it ran freely) or, without
one, its rating times ``core.heat_pump.DEFAULT_DUTY``, the planner's own assumption before history.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from services.dispatcher.core.heat_pump import DEFAULT_DUTY
from shared.config import LoadConfig
from shared.config.loads import HeatPumpLoad

from .data import Series

__all__ = ["FlexTally", "FlexibleLoad", "HeatPumpDemand", "flexible_loads"]


class FlexibleLoad(Protocol):
    @property
    def config(self) -> LoadConfig: ...

    def draw_w(self, k: int, on: bool, grid_w: float) -> float:
        """What it draws over data step ``k`` (W), switched ``on`` or not, the grid CT having
        shown ``grid_w`` (import +) at the step before."""
        ...


@dataclass(frozen=True, eq=False)
class HeatPumpDemand:
    """A heat pump that draws its demand while switched on and nothing while off."""

    config: HeatPumpLoad
    demand_w: np.ndarray  # per data step, while switched on

    def draw_w(self, k: int, on: bool, grid_w: float) -> float:
        return float(self.demand_w[k]) if on else 0.0


def flexible_loads(loads: tuple[LoadConfig, ...], series: Series) -> tuple[FlexibleLoad, ...]:
    """The models of the configured loads this backtest knows how to replay."""
    out: list[FlexibleLoad] = []
    for load in loads:
        if isinstance(load, HeatPumpLoad):
            if series.heat_pump_w is not None:
                demand = np.asarray(series.heat_pump_w, dtype=float)
            else:
                demand = np.full(len(series.times), load.rated_power_w * DEFAULT_DUTY)
            out.append(HeatPumpDemand(load, demand))
    return tuple(out)


@dataclass
class FlexTally:
    """Per load: energy drawn, and how much of it the battery gave (kWh)."""

    drawn_kwh: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    from_battery_kwh: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, load: str, draw_w: float, fed_w: float, dt_h: float) -> None:
        self.drawn_kwh[load] += draw_w * dt_h / 1000.0
        self.from_battery_kwh[load] += fed_w * dt_h / 1000.0

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "kwh": round(drawn, 3),
                "from_battery_kwh": round(self.from_battery_kwh[name], 3),
                "from_grid_or_pv_kwh": round(drawn - self.from_battery_kwh[name], 3),
            }
            for name, drawn in sorted(self.drawn_kwh.items())
        }
