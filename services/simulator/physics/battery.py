"""A stack of LFP modules in parallel (Pylontech US2000-style), stepped in time.

The hot path (``apply``) works on pack-level scalars only, so a simulated year at 1-minute steps stays
fast; per-module and per-cell detail is *derived* from the pack state when someone reads it
(``snapshot``), which is what the BMS server and the ground truth need a few times a second at most.

Sign convention (shared/messages.py): battery power and current are positive when the battery
*discharges* into the AC bus and negative when it charges. The Pylontech wire protocol uses the
opposite current sign (+ charge); the BMS server converts.

Energy model: the pack stores ``energy_wh`` of DC energy. Charging with AC power ``p`` stores
``p * charge_efficiency``; delivering AC power ``p`` draws ``p / discharge_efficiency``. SoC is
stored energy over full energy, where full energy is the sum of module capacities times the nominal
voltage. The inverter's SoC floor and ceiling bound what the AC side may take or give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

CELLS_PER_MODULE = 15
NOMINAL_CELL_V = 3.2
KELVIN_OFFSET = 273.1

# LFP open-circuit voltage per cell against SoC (%), a typical curve: flat in the middle, steep at
# both ends. This flatness is why voltage says little about SoC in the middle of the range.
_OCV_SOC = np.array([0.0, 2.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 100.0])
_OCV_V = np.array(
    [2.80, 3.00, 3.12, 3.20, 3.245, 3.27, 3.285, 3.295, 3.305, 3.315, 3.325, 3.335, 3.36, 3.42, 3.46]
)


def cell_ocv(soc_pct: float) -> float:
    """Open-circuit voltage of one LFP cell at ``soc_pct``."""
    return float(np.interp(soc_pct, _OCV_SOC, _OCV_V))


@dataclass(frozen=True, slots=True)
class WeakModule:
    """One module that has lost capacity and keeps losing it with every equivalent full cycle."""

    index: int
    capacity_pct: float = 85.0
    fade_pct_per_cycle: float = 0.02
    # The weak module's worst cell sits this far below its siblings ("slow death" cells).
    low_cell_mv: float = 25.0


@dataclass(frozen=True, slots=True)
class BatteryParams:
    modules: int = 5
    module_ah: float = 50.0
    module_model: str = "US2000B-Plus"
    nominal_module_v: float = 48.0
    charge_efficiency: float = 0.96
    discharge_efficiency: float = 0.96
    max_charge_w: float = 3000.0
    max_discharge_w: float = 3000.0
    min_soc_pct: float = 10.0
    max_soc_pct: float = 100.0
    initial_soc_pct: float = 50.0
    module_resistance_ohm: float = 0.03
    # Per-module BMS recommendations (US2000B Plus: 25 A recommended, 50 A max).
    module_charge_limit_a: float = 25.0
    module_discharge_limit_a: float = 25.0
    ambient_c: float = 18.0
    thermal_tau_s: float = 3600.0
    cell_spread_mv: float = 6.0
    temp_spread_c: float = 0.8
    initial_cycles: float = 0.0
    weak: WeakModule | None = None
    seed: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.min_soc_pct < self.max_soc_pct <= 100:
            raise ValueError(
                f"need 0 <= min_soc_pct < max_soc_pct <= 100, got {self.min_soc_pct} / {self.max_soc_pct}"
            )
        if not 0 <= self.initial_soc_pct <= 100:
            raise ValueError(f"initial_soc_pct must be 0..100, got {self.initial_soc_pct}")
        if self.weak is not None and not 0 <= self.weak.index < self.modules:
            raise ValueError(f"weak module index {self.weak.index} outside 0..{self.modules - 1}")
        for name in ("charge_efficiency", "discharge_efficiency"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")

    @property
    def usable_kwh(self) -> float:
        """Energy between the SoC floor and ceiling of a new pack (weak module included)."""
        full_ah = self.module_ah * self.modules
        if self.weak is not None:
            full_ah -= self.module_ah * (1 - self.weak.capacity_pct / 100.0)
        return full_ah * self.nominal_module_v / 1000.0 * (self.max_soc_pct - self.min_soc_pct) / 100.0


# ---- the read-only view the BMS server (services/simulator/devices/pylontech.py) reads ----------


@dataclass(frozen=True, slots=True)
class ModuleView:
    """One module as its BMS would report it. Current: discharge ``+`` / charge ``-`` (project sign)."""

    index: int
    model: str
    serial: str
    voltage_v: float
    current_a: float
    soc_pct: float
    remaining_ah: float
    full_ah: float
    design_ah: float
    cycles: int
    cell_voltages_v: tuple[float, ...]
    cell_temps_c: tuple[float, ...]
    bms_temp_c: float
    charge_current_limit_a: float
    discharge_current_limit_a: float
    charge_voltage_limit_v: float
    discharge_voltage_limit_v: float
    charge_enabled: bool
    discharge_enabled: bool
    charge_immediately: bool
    full_charge_request: bool
    soh_pct: float


@dataclass(frozen=True, slots=True)
class PackView:
    """The whole stack at one instant. ``power_w``/``current_a``: discharge ``+`` / charge ``-``."""

    voltage_v: float
    current_a: float
    power_w: float
    soc_pct: float
    energy_wh: float
    full_wh: float
    temp_c: float
    cycles: int
    charge_current_limit_a: float
    discharge_current_limit_a: float
    modules: tuple[ModuleView, ...]


class BatteryView(Protocol):
    """What a device server may read from the battery: a consistent snapshot, never the live object."""

    def snapshot(self) -> PackView: ...


# ---- the model -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Spread:
    """Fixed per-cell offsets, drawn once from the seed so a module's cells always differ the same way."""

    cell_mv: np.ndarray
    cell_temp_c: np.ndarray
    serials: tuple[str, ...]


def _spread(params: BatteryParams) -> _Spread:
    rng = np.random.default_rng([params.seed, 0xBA77])
    cell_mv = rng.normal(0.0, params.cell_spread_mv / 2.0, size=(params.modules, CELLS_PER_MODULE))
    cell_mv -= cell_mv.mean(axis=1, keepdims=True)
    if params.weak is not None:
        cell_mv[params.weak.index, int(rng.integers(CELLS_PER_MODULE))] -= params.weak.low_cell_mv
    temps = rng.normal(0.0, params.temp_spread_c, size=(params.modules, 4))
    serials = tuple(f"PPTBH0{params.seed % 100:02d}{i:08d}" for i in range(params.modules))
    return _Spread(cell_mv, temps, serials)


@dataclass(slots=True)
class Battery:
    """The pack. ``apply`` moves energy; ``limits_w`` says what the next step can take or give."""

    params: BatteryParams
    energy_wh: float = field(init=False)
    power_w: float = field(init=False, default=0.0)
    temp_c: float = field(init=False)
    cycles: float = field(init=False)
    _spread: _Spread = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.cycles = self.params.initial_cycles
        self.temp_c = self.params.ambient_c
        self.energy_wh = self.full_wh * self.params.initial_soc_pct / 100.0
        self._spread = _spread(self.params)

    # capacity ---------------------------------------------------------------------------------
    def module_full_ah(self, index: int) -> float:
        p = self.params
        weak = p.weak
        if weak is None or index != weak.index:
            return p.module_ah
        fade = max(0.0, 1.0 - weak.fade_pct_per_cycle / 100.0 * self.cycles)
        return p.module_ah * weak.capacity_pct / 100.0 * fade

    @property
    def full_ah(self) -> float:
        p = self.params
        if p.weak is None:
            return p.module_ah * p.modules
        return p.module_ah * (p.modules - 1) + self.module_full_ah(p.weak.index)

    @property
    def full_wh(self) -> float:
        return self.full_ah * self.params.nominal_module_v

    @property
    def soc_pct(self) -> float:
        return 100.0 * self.energy_wh / self.full_wh

    # limits -----------------------------------------------------------------------------------
    def bms_current_limits_a(self) -> tuple[float, float]:
        """(charge, discharge) current the BMS allows now, tapering near full/empty and in the cold."""
        p = self.params
        soc = self.soc_pct
        charge = p.module_charge_limit_a * p.modules
        discharge = p.module_discharge_limit_a * p.modules
        if soc > 95.0:
            charge *= max(0.0, (100.0 - soc) / 5.0)
        if soc < 5.0:
            discharge *= max(0.0, soc / 5.0)
        if self.temp_c < 0.0:
            charge = 0.0
        elif self.temp_c < 10.0:
            charge *= 0.5
        return charge, discharge

    def limits_w(self, dt_s: float) -> tuple[float, float]:
        """(max charge, max discharge) AC power for a step of ``dt_s``: power, BMS and SoC bounds."""
        p = self.params
        full = self.full_wh
        volts = self.params.nominal_module_v
        charge_a, discharge_a = self.bms_current_limits_a()
        room_wh = max(0.0, full * p.max_soc_pct / 100.0 - self.energy_wh)
        left_wh = max(0.0, self.energy_wh - full * p.min_soc_pct / 100.0)
        hours = dt_s / 3600.0
        max_charge = min(p.max_charge_w, charge_a * volts, room_wh / p.charge_efficiency / hours)
        max_discharge = min(p.max_discharge_w, discharge_a * volts, left_wh * p.discharge_efficiency / hours)
        return max(0.0, max_charge), max(0.0, max_discharge)

    # the step ---------------------------------------------------------------------------------
    def apply(self, ac_power_w: float, dt_s: float) -> float:
        """Run the pack at ``ac_power_w`` (discharge +) for ``dt_s``; returns the power actually delivered.

        The request is clamped to ``limits_w`` so SoC never leaves [min_soc, max_soc].
        """
        max_charge, max_discharge = self.limits_w(dt_s)
        power = min(max(ac_power_w, -max_charge), max_discharge)
        p = self.params
        hours = dt_s / 3600.0
        if power >= 0.0:
            dc_wh = power / p.discharge_efficiency * hours
            self.energy_wh -= dc_wh
            self.cycles += dc_wh / self.full_wh
        else:
            self.energy_wh -= power * p.charge_efficiency * hours
        # Numerical guard only: limits_w already keeps energy inside the window.
        full = self.full_wh
        self.energy_wh = min(max(self.energy_wh, full * p.min_soc_pct / 100.0 * 0.999999), full)
        # First-order heating by I^2 R towards ambient.
        current = power / p.nominal_module_v
        heat_c = (current * current * p.module_resistance_ohm / p.modules) * 0.05
        alpha = min(1.0, dt_s / p.thermal_tau_s)
        self.temp_c += alpha * (p.ambient_c + heat_c - self.temp_c)
        self.power_w = power
        return power

    # the view -----------------------------------------------------------------------------------
    def snapshot(self) -> PackView:
        p = self.params
        soc = self.soc_pct
        ocv_cell = cell_ocv(soc)
        full_ah = self.full_ah
        pack_ocv = ocv_cell * CELLS_PER_MODULE
        current = self.power_w / pack_ocv if pack_ocv > 0 else 0.0
        charge_a, discharge_a = self.bms_current_limits_a()
        modules = []
        for i in range(p.modules):
            share = self.module_full_ah(i) / full_ah
            module_current = current * share
            # Discharge current (+) pulls the terminal voltage below OCV, charge lifts it.
            drop_v = module_current * p.module_resistance_ohm / CELLS_PER_MODULE
            offsets_v = self._spread.cell_mv[i] / 1000.0
            cells = tuple(round(float(ocv_cell - drop_v + off), 4) for off in offsets_v)
            temps = tuple(round(self.temp_c + float(t), 2) for t in self._spread.cell_temp_c[i])
            module_full = self.module_full_ah(i)
            modules.append(
                ModuleView(
                    index=i,
                    model=p.module_model,
                    serial=self._spread.serials[i],
                    voltage_v=round(sum(cells), 3),
                    current_a=round(module_current, 2),
                    soc_pct=round(soc, 2),
                    remaining_ah=round(module_full * soc / 100.0, 3),
                    full_ah=round(module_full, 3),
                    design_ah=p.module_ah,
                    cycles=math.floor(self.cycles),
                    cell_voltages_v=cells,
                    cell_temps_c=temps,
                    bms_temp_c=round(self.temp_c + 1.5, 2),
                    charge_current_limit_a=round(charge_a * share, 1),
                    discharge_current_limit_a=round(discharge_a * share, 1),
                    charge_voltage_limit_v=53.2,
                    discharge_voltage_limit_v=44.5,
                    charge_enabled=charge_a > 0,
                    discharge_enabled=discharge_a > 0,
                    charge_immediately=soc < 9.0,
                    full_charge_request=False,
                    soh_pct=round(100.0 * module_full / p.module_ah, 1),
                )
            )
        return PackView(
            voltage_v=round(sum(m.voltage_v for m in modules) / len(modules), 3),
            current_a=round(current, 2),
            power_w=round(self.power_w, 1),
            soc_pct=round(soc, 2),
            energy_wh=round(self.energy_wh, 1),
            full_wh=round(self.full_wh, 1),
            temp_c=round(self.temp_c, 2),
            cycles=math.floor(self.cycles),
            charge_current_limit_a=round(charge_a, 1),
            discharge_current_limit_a=round(discharge_a, 1),
            modules=tuple(modules),
        )
