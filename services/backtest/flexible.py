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

``diverter`` (``DiverterDraw``): a CT-driven immersion diverter (Solic 200, iBoost) on its own clamp
on the grid tails, as the simulator models it (``services/simulator/physics/loads.py``) but at the
data's step: it settles within a second, so within a step it takes the export its clamp saw less
its margin (``DIVERTER_MARGIN_W``), starting only above ``DIVERTER_START_W``, up to its rating and
until the tank has taken ``DIVERTER_TANK_KWH`` that day (UTC). It runs whenever the dispatcher has
no relay on it (``switch_topic`` null, the seed's case) or its relay is on. Because it reacts within
the step and the controller only at the next one, the controller sees the grid with the diverter's
draw already in it: the battery drains into the tank unless the diverter's own CT
(``meter``) leaves it out of the battery's target, or the guard for a diverter without a CT
(``core.diverter_guard``) caps the discharge.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from services.dispatcher.core.heat_pump import DEFAULT_DUTY
from shared.config import LoadConfig
from shared.config.loads import DiverterLoad, HeatPumpLoad

from .data import Series

__all__ = ["DiverterDraw", "FlexTally", "FlexibleLoad", "HeatPumpDemand", "flexible_loads"]

# The simulator's defaults for a diverter (``simulator.diverter``): its margin, start threshold, tank.
DIVERTER_MARGIN_W = 50.0
DIVERTER_START_W = 100.0
DIVERTER_TANK_KWH = 7.0


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


@dataclass(eq=False)
class DiverterDraw:
    """A grid-CT diverter: its draw follows the export its clamp sees (state: its last draw, the tank)."""

    config: DiverterLoad
    step_s: float
    days: np.ndarray  # day number of each data step, for the tank
    net_w: np.ndarray  # the data's PV minus its load per step: how the export moves from step to step
    power_w: float = 0.0
    heated_wh: float = 0.0
    day: int = -1

    def draw_w(self, k: int, on: bool, grid_w: float) -> float:
        if self.days[k] != self.day:
            self.day, self.heated_wh = int(self.days[k]), 0.0
        runs = on or self.config.switch_topic is None
        # What its clamp sees this step without its own draw: last step's export with its draw
        # added back, moved by how PV and the house's load moved since (the battery is still at
        # its last power: the controller acts on this step's grid only at the next).
        export = self.power_w - grid_w + (self.net_w[k] - self.net_w[k - 1] if k else 0.0)
        if not runs or self.heated_wh >= DIVERTER_TANK_KWH * 1000.0 or export < DIVERTER_START_W:
            self.power_w = 0.0
        else:
            self.power_w = float(min(export - DIVERTER_MARGIN_W, self.config.rated_power_w))
        self.heated_wh += self.power_w * self.step_s / 3600.0
        return self.power_w


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
        elif isinstance(load, DiverterLoad):
            days = pd.factorize(series.times.floor("D"))[0]
            net = np.asarray(series.pv_w, dtype=float) - np.asarray(series.load_w, dtype=float)
            out.append(DiverterDraw(load, float(series.step_s), days, net))
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
                "kwh": round(float(drawn), 3),
                "from_battery_kwh": round(float(self.from_battery_kwh[name]), 3),
                "from_grid_or_pv_kwh": round(float(drawn - self.from_battery_kwh[name]), 3),
            }
            for name, drawn in sorted(self.drawn_kwh.items())
        }
