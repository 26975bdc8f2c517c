"""Flexible loads with their own controllers: an immersion diverter and a heat pump.

The diverter is the classic grid-CT kind (Eddi, iBoost): it watches a CT on the grid tails and pushes
whatever it sees being exported into the hot-water tank. It cannot tell PV surplus from battery
discharge, so with the battery in self-use the two chase each other ("kettle goes off, the diverter
pounces, the battery drains into the hot water"). The simulator reproduces that on purpose.

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
    # It diverts what it sees exported beyond this margin, so it never imports for the tank itself.
    margin_w: float = 50.0
    # Hot water drawn per day, spread over morning and evening draws (Wh).
    daily_use_kwh: float = 5.0
    # The diverter's reaction per step (0..1 of the seen error); real units settle within seconds.
    gain: float = 0.8


@dataclass(slots=True)
class Diverter:
    params: DiverterParams = field(default_factory=DiverterParams)
    power_w: float = 0.0
    tank_wh: float = 0.0
    enabled: bool = True

    def update(self, grid_seen_w: float, dt_s: float, hour: float) -> None:
        """React to the grid CT (import +) for the next step, and heat/use the tank over ``dt_s``."""
        p = self.params
        self.tank_wh += self.power_w * dt_s / 3600.0
        # Morning and evening draws of hot water empty the tank again.
        if 6.5 <= hour < 8.0 or 18.0 <= hour < 21.0:
            self.tank_wh -= p.daily_use_kwh * 1000.0 / 4.5 * dt_s / 3600.0
        self.tank_wh = min(max(self.tank_wh, 0.0), p.tank_kwh * 1000.0)
        if not self.enabled or self.tank_wh >= p.tank_kwh * 1000.0 - 1.0:
            self.power_w = 0.0
            return
        export_seen = -grid_seen_w - p.margin_w
        self.power_w = min(max(self.power_w + p.gain * export_seen, 0.0), p.rated_w)


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
