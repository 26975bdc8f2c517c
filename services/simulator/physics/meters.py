"""CT meters that read like real ones, including how they lie at low current.

Error model of one meter (Eastron SDM120/SDM630-like, see shared/protocols/eastron_sdm_registers.md):

* a fixed **gain error** drawn once per meter within its accuracy class (class 1: within +-1%);
* an **absolute floor**: a fixed offset plus reading noise of a few watts, which dominates small loads
  (Eastron specify active power as +-1% of *range maximum*, not of reading);
* below the **starting current** the reading stops tracking the true flow and wanders: a bounded
  random walk around zero. This is the "CT says 30 W export when nothing flows" effect.

Energy registers integrate the *measured* power, as the meter does, so import/export totals carry the
gain error. All randomness comes from the meter's own seeded stream.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CtErrorModel:
    accuracy_pct: float = 1.0
    floor_w: float = 8.0
    noise_w: float = 3.0
    starting_current_a: float = 0.08
    wander_w: float = 25.0
    nominal_voltage_v: float = 240.0

    @property
    def starting_power_w(self) -> float:
        return self.starting_current_a * self.nominal_voltage_v


PERFECT = CtErrorModel(accuracy_pct=0.0, floor_w=0.0, noise_w=0.0, starting_current_a=0.0, wander_w=0.0)


@dataclass(slots=True)
class Ct:
    """One current transformer and its meter electronics. Power: the sign of what it is clamped on."""

    model: CtErrorModel
    seed: int
    gain: float = field(init=False)
    offset_w: float = field(init=False)
    _rng: random.Random = field(init=False, repr=False)
    _wander: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self.gain = 1.0 + self._rng.uniform(-1.0, 1.0) * self.model.accuracy_pct / 100.0
        self.offset_w = self._rng.uniform(-1.0, 1.0) * self.model.floor_w

    def read(self, true_w: float) -> float:
        m = self.model
        if abs(true_w) < m.starting_power_w:
            # Below the starting current the meter loses the signal: its reading drifts by itself.
            self._wander += self._rng.gauss(0.0, m.wander_w / 4.0)
            self._wander = max(-m.wander_w, min(m.wander_w, self._wander))
            return self._wander
        self._wander *= 0.5
        return true_w * self.gain + self.offset_w + self._rng.gauss(0.0, m.noise_w)


@dataclass(slots=True)
class MeterReading:
    power_w: float
    voltage_v: float
    current_a: float
    frequency_hz: float
    power_factor: float
    import_kwh: float
    export_kwh: float


@dataclass(slots=True)
class EnergyMeter:
    """A meter on one flow of the house (grid, PV, heat pump...). Power sign as wired: import +."""

    ct: Ct
    import_wh: float = 0.0
    export_wh: float = 0.0
    power_w: float = 0.0
    _integrated_w: float = 0.0

    def integrate(self, true_w: float, dt_s: float) -> None:
        """Advance the energy registers by the true flow seen through the gain error (cheap, every step)."""
        measured = true_w * self.ct.gain
        if measured >= 0:
            self.import_wh += measured * dt_s / 3600.0
        else:
            self.export_wh -= measured * dt_s / 3600.0
        self._integrated_w = true_w

    def read(self, voltage_v: float, frequency_hz: float) -> MeterReading:
        """What the meter shows now: the instantaneous power goes through the full error model."""
        power = self.ct.read(self._integrated_w)
        self.power_w = power
        # Domestic loads are mostly resistive; a little reactive power at low load is typical.
        pf = 0.99 if abs(power) > 200 else 0.9
        current = abs(power) / (voltage_v * pf) if voltage_v > 0 else 0.0
        return MeterReading(
            power_w=power,
            voltage_v=voltage_v,
            current_a=current,
            frequency_hz=frequency_hz,
            power_factor=math.copysign(pf, power) if power else 1.0,
            import_kwh=self.import_wh / 1000.0,
            export_kwh=self.export_wh / 1000.0,
        )
