"""Household demand (W) per minute: a smooth base profile plus stochastic appliance events.

Smooth averaged profiles make a battery look better than it is: real demand is spiky (a 3 kW kettle
for three minutes on a 250 W base), and those spikes are what an inverter has to chase. So:

* **base**: always-on load (fridge cycling on/off, standby) plus a UK-shaped daily curve with
  morning and evening peaks, more lighting in winter, and a little minute-to-minute noise;
* **events**: kettle, oven, electric shower and washing machine, each arriving as a Poisson count per
  day at times drawn from its own time-of-day propensity, each with its power shape (the oven's
  thermostat cycling, the washing machine's heating phase then motor).

``annual_kwh`` sets the expected yearly total: the expected appliance energy is worked out from the
rates and shapes, and the base curve is scaled to supply the rest. Every day is drawn from its own
``(seed, day)`` random stream, so the same seed gives the same day whatever day the run started on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

from .pv import MINUTES_PER_DAY

# Relative base shape by hour (UK domestic, profile-class-1-like): low overnight, breakfast bump,
# a long evening peak. Normalised to mean 1 below.
_BASE_SHAPE = np.array(
    [0.70, 0.60, 0.55, 0.52, 0.52, 0.55, 0.75, 1.00, 1.05, 0.95, 0.90, 0.90,
     0.95, 0.90, 0.88, 0.92, 1.05, 1.35, 1.60, 1.60, 1.50, 1.35, 1.10, 0.85]
)  # fmt: skip
_BASE_SHAPE = _BASE_SHAPE / _BASE_SHAPE.mean()


@dataclass(frozen=True, slots=True)
class Appliance:
    """One kind of event: ``shape`` is its power (W) minute by minute from switch-on."""

    name: str
    per_day: float
    shape: tuple[float, ...]
    # Time-of-day propensity: (hour, weight, spread in hours) bumps.
    when: tuple[tuple[float, float, float], ...]
    weekend_factor: float = 1.0

    @property
    def energy_wh(self) -> float:
        return sum(self.shape) / 60.0


def _oven_shape() -> tuple[float, ...]:
    # 10 minutes heating up flat out, then the thermostat cycles ~60% duty for 35 minutes.
    heat = [2400.0] * 10
    cycle = ([2400.0] * 3 + [0.0] * 2) * 7
    return tuple(heat + cycle)


def _washer_shape() -> tuple[float, ...]:
    fill = [120.0] * 5
    heat = [2000.0] * 15
    wash = [180.0, 250.0] * 25
    spin = [450.0] * 10
    return tuple(fill + heat + wash + spin)


DEFAULT_APPLIANCES: tuple[Appliance, ...] = (
    Appliance("kettle", 4.0, (2900.0, 2900.0, 2900.0), ((7.5, 1.0, 1.0), (13.0, 0.6, 1.5), (17.5, 0.8, 2.0))),
    Appliance("oven", 0.6, _oven_shape(), ((17.8, 1.0, 0.8), (12.5, 0.2, 0.7)), weekend_factor=1.4),
    Appliance("shower", 0.5, (8500.0,) * 8, ((7.0, 1.0, 0.7), (21.5, 0.4, 1.0))),
    Appliance(
        "washing_machine", 0.6, _washer_shape(), ((10.0, 1.0, 2.0), (19.0, 0.5, 1.5)), weekend_factor=1.5
    ),
)


@dataclass(frozen=True, slots=True)
class DemandModel:
    seed: int = 1
    annual_kwh: float = 3200.0
    always_on_w: float = 90.0
    fridge_w: float = 90.0
    noise_pct: float = 8.0
    winter_boost: float = 0.25
    appliances: tuple[Appliance, ...] = field(default=DEFAULT_APPLIANCES)

    def __post_init__(self) -> None:
        if self.annual_kwh <= self.expected_fixed_kwh():
            raise ValueError(
                f"annual_kwh={self.annual_kwh} is below what the always-on load, fridge and appliances use "
                f"alone ({self.expected_fixed_kwh():.0f} kWh): raise it or lower their rates"
            )

    def expected_fixed_kwh(self) -> float:
        per_day_wh = sum(a.per_day * (5 + 2 * a.weekend_factor) / 7 * a.energy_wh for a in self.appliances)
        fridge_wh = self.fridge_w / 3 * 24  # one third duty
        return (per_day_wh + fridge_wh + self.always_on_w * 24) * 365 / 1000.0

    @property
    def base_mean_w(self) -> float:
        """Mean of the shaped base curve that brings the expected year to ``annual_kwh``."""
        return (self.annual_kwh - self.expected_fixed_kwh()) * 1000.0 / 8760.0

    def day(self, day: date) -> np.ndarray:
        """Demand (W) for each minute of local ``day`` (1440 values; DST days are mapped by clock)."""
        rng = np.random.default_rng([self.seed, 0xDE3A, day.toordinal()])
        minutes = np.arange(MINUTES_PER_DAY)
        shape = np.interp(minutes / 60.0, np.arange(24) + 0.5, _BASE_SHAPE, period=24)
        # Winter lighting and heating circulation pumps: more in the dark months.
        season = 1.0 + self.winter_boost * np.cos(2 * np.pi * (day.timetuple().tm_yday - 10) / 365.0)
        base = self.base_mean_w * shape * season
        base *= np.exp(rng.normal(0.0, self.noise_pct / 100.0, MINUTES_PER_DAY))
        phase = int(rng.integers(60))
        fridge = np.where(((minutes + phase) % 60) < 20, self.fridge_w, 0.0)
        load = base + fridge + self.always_on_w
        weekend = day.weekday() >= 5
        for appliance in self.appliances:
            rate = appliance.per_day * (appliance.weekend_factor if weekend else 1.0)
            for _ in range(int(rng.poisson(rate))):
                start = _draw_start(rng, appliance.when)
                profile = np.asarray(appliance.shape)
                end = min(MINUTES_PER_DAY, start + profile.size)
                load[start:end] += profile[: end - start]
        return load


def _draw_start(rng: np.random.Generator, when: tuple[tuple[float, float, float], ...]) -> int:
    weights = np.array([w for _, w, _ in when])
    hour, _, spread = when[int(rng.choice(len(when), p=weights / weights.sum()))]
    minute = round(float(hour + rng.normal(0.0, spread)) * 60.0)
    return minute % MINUTES_PER_DAY
