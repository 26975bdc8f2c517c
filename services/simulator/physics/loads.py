"""Flexible loads with their own controllers: an immersion diverter and a heat pump.

The diverter is the classic grid-CT kind (Solic 200, iBoost, Eddi, immerSUN, the open Mk2 PV Router):
its own CT clamp on the grid tails, and a triac feeding the immersion heater a share of its rating so
that the export the clamp sees is brought down to a small margin. Modelled as such units are
described (immerSUN's installation guide: it "adjusts power levels to the immersion heater, keeping
the exported power at virtually zero"; Robin Emley's Mk2 PV Router, openenergymonitor/learn
``view/pv-diversion/mk2/``: the export measured on every mains cycle decides the triac's firing, so
it reacts within a fraction of a second): it starts only once its clamp sees more than ``start_w``
exported, then moves its power proportionally to the export beyond ``margin_w`` with the time
constant ``reaction_s``, between 0 and ``rated_w``, until the tank is hot. It cannot tell PV surplus
from battery discharge, so with the battery zeroing the grid the two chase each other ("kettle goes
off, the diverter pounces, the battery drains into the hot water"). The simulator reproduces that
on purpose. No Solic 200 manual was found to check its own start threshold and reaction time
against: they are parameters (``simulator.diverter`` in the config).

The heat pump is weather-driven: its heat demand follows the outdoor temperature and its electrical
draw is heat over a temperature-dependent COP, modulating down to a minimum and cycling below it.
It also obeys an on/off switch (the dispatcher's load command), so that a controller can shift it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DiverterParams:
    rated_w: float = 3000.0
    tank_kwh: float = 7.0
    # The export it leaves: it diverts what its clamp sees beyond this, so it never imports for the tank.
    margin_w: float = 50.0
    # Export its clamp must see before it starts from idle (once running it regulates to ``margin_w``).
    start_w: float = 100.0
    # Time constant of its proportional response (s): the triac's share settles within a few of these.
    reaction_s: float = 1.0
    # Hot water drawn per day, spread over morning and evening draws (Wh).
    daily_use_kwh: float = 5.0


@dataclass(slots=True)
class Diverter:
    params: DiverterParams = field(default_factory=DiverterParams)
    power_w: float = 0.0
    tank_wh: float = 0.0
    enabled: bool = True

    def update(self, clamp_w: float, dt_s: float, hour: float) -> None:
        """React to its own clamp's grid reading (import +) for the next step, and heat/use the tank
        over ``dt_s``."""
        p = self.params
        self.tank_wh += self.power_w * dt_s / 3600.0
        # Morning and evening draws of hot water empty the tank again.
        if 6.5 <= hour < 8.0 or 18.0 <= hour < 21.0:
            self.tank_wh -= p.daily_use_kwh * 1000.0 / 4.5 * dt_s / 3600.0
        self.tank_wh = min(max(self.tank_wh, 0.0), p.tank_kwh * 1000.0)
        if not self.enabled or self.tank_wh >= p.tank_kwh * 1000.0 - 1.0:
            self.power_w = 0.0
            return
        export = -clamp_w
        if self.power_w <= 0.0 and export < p.start_w:
            self.power_w = 0.0
            return
        share = min(1.0, dt_s / p.reaction_s) if p.reaction_s > 0 else 1.0
        self.power_w = min(max(self.power_w + share * (export - p.margin_w), 0.0), p.rated_w)


@dataclass(frozen=True, slots=True)
class HeatPumpParams:
    heat_loss_w_per_k: float = 180.0
    indoor_c: float = 20.0
    # Outdoor temperature above which the heating is off.
    heating_off_c: float = 15.5
    min_w: float = 400.0
    max_w: float = 2500.0
    cycle_period_s: float = 1800.0


@dataclass(slots=True)
class HeatPump:
    params: HeatPumpParams = field(default_factory=HeatPumpParams)
    power_w: float = 0.0
    enabled: bool = True

    @staticmethod
    def cop(outdoor_c: float) -> float:
        """Air-source COP, falling as it gets colder (about 2.6 at 0 deg C, 4 at 12 deg C)."""
        return max(1.5, 2.6 + 0.12 * outdoor_c)

    def update(self, outdoor_c: float, now_s: float) -> None:
        p = self.params
        if not self.enabled or outdoor_c >= p.heating_off_c:
            self.power_w = 0.0
            return
        heat_w = p.heat_loss_w_per_k * (p.indoor_c - outdoor_c)
        electric = heat_w / self.cop(outdoor_c)
        if electric >= p.min_w:
            self.power_w = min(electric, p.max_w)
            return
        # Below its minimum modulation it cycles: on at minimum for a share of each period.
        duty = electric / p.min_w
        self.power_w = p.min_w if (now_s % p.cycle_period_s) < duty * p.cycle_period_s else 0.0
