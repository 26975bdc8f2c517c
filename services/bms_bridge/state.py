"""Pure: what the BMS said -> ``BatteryState``. No I/O, no clock.

Sign: Pylontech reports current charge ``+``; the project's convention is discharge ``+``, so
every current and power is flipped here and nowhere else. Modules of a stack are in parallel:
currents and current limits add, the pack voltage is the modules' mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.messages import BatteryLimits, BatteryState, CellState, ModuleState
from shared.pylontech import ChargeDischarge, ModuleAlarms, ModuleAnalog

# What a healthy LFP (or any Li-ion) module can report; outside these a value was misread.
CELL_V = (1.5, 4.5)
MODULE_V = (20.0, 65.0)
TEMP_C = (-40.0, 100.0)
MAX_CURRENT_A = 500.0


class ImplausibleReading(ValueError):
    """A value the BMS sent that no battery can have: it is not published."""


@dataclass(frozen=True, slots=True)
class ModuleReading:
    address: int
    analog: ModuleAnalog
    alarms: ModuleAlarms
    limits: ChargeDischarge


def _check(name: str, value: float, low: float, high: float, address: int) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise ImplausibleReading(f"module at address {address}: {name}={value:g} outside {low:g}..{high:g}")


def check_plausible(reading: ModuleReading) -> None:
    a, adr = reading.analog, reading.address
    if not a.cell_mv:
        raise ImplausibleReading(f"module at address {adr}: no cell voltages")
    for i, v in enumerate(a.cell_voltages_v, start=1):
        _check(f"cell{i}_voltage_v", v, *CELL_V, adr)
    for i, t in enumerate(a.temps_c, start=1):
        _check(f"temp{i}_c", t, *TEMP_C, adr)
    _check("voltage_v", a.voltage_v, *MODULE_V, adr)
    _check("current_a", a.current_a, -MAX_CURRENT_A, MAX_CURRENT_A, adr)
    if a.total_mah <= 0:
        raise ImplausibleReading(f"module at address {adr}: total capacity {a.total_ah:g} Ah")
    # A BMS may count a little past full before it recalibrates; more than 5 % is a misread.
    _check("remaining_ah", a.remaining_ah, 0.0, a.total_ah * 1.05, adr)
    lim = reading.limits
    _check("charge_current_limit_a", lim.charge_current_da / 10, 0.0, MAX_CURRENT_A, adr)
    _check("discharge_current_limit_a", lim.discharge_current_da / 10, 0.0, MAX_CURRENT_A, adr)


def module_state(index: int, reading: ModuleReading) -> ModuleState:
    a = reading.analog
    cells = a.cell_voltages_v
    return ModuleState(
        index=index,
        voltage_v=a.voltage_v,
        current_a=-a.current_a,
        soc_pct=min(100.0, 100.0 * a.remaining_mah / a.total_mah),
        remaining_ah=a.remaining_ah,
        full_ah=a.total_ah,
        cycles=a.cycles,
        temps_c=a.temps_c,
        cells=tuple(CellState(voltage_v=v) for v in cells),
        cell_spread_mv=float(max(a.cell_mv) - min(a.cell_mv)),
        alarms=reading.alarms.names(),
    )


def _cell_temps(analog: ModuleAnalog) -> tuple[float, ...]:
    # The first temperature is the BMS board, not a cell.
    temps = analog.temps_c
    return temps[1:] if len(temps) > 1 else temps


def build_state(
    device: str, readings: Sequence[ModuleReading], ts: datetime, *, model: str = "pylontech_rs485"
) -> BatteryState:
    """The stack's state from one poll of every module. Raises ``ImplausibleReading``."""
    if not readings:
        raise ImplausibleReading("no module was read")
    for reading in readings:
        check_plausible(reading)
    modules = tuple(module_state(i, r) for i, r in enumerate(readings))
    analogs = [r.analog for r in readings]
    limits = [r.limits for r in readings]
    all_cells_mv = [mv for a in analogs for mv in a.cell_mv]
    cell_temps = [t for a in analogs for t in _cell_temps(a)]
    current = sum(m.current_a for m in modules)
    power = sum(m.voltage_v * m.current_a for m in modules)
    remaining = sum(a.remaining_mah for a in analogs)
    total = sum(a.total_mah for a in analogs)
    return BatteryState(
        ts=ts,
        device=device,
        model=model,
        voltage_v=round(sum(m.voltage_v for m in modules) / len(modules), 3),
        current_a=round(current, 1),
        power_w=round(power, 1),
        soc_pct=round(min(100.0, 100.0 * remaining / total), 2),
        temp_min_c=min(cell_temps) if cell_temps else None,
        temp_max_c=max(cell_temps) if cell_temps else None,
        cycles=max(a.cycles for a in analogs),
        cell_min_v=min(all_cells_mv) / 1000.0,
        cell_max_v=max(all_cells_mv) / 1000.0,
        cell_spread_mv=float(max(all_cells_mv) - min(all_cells_mv)),
        limits=BatteryLimits(
            # The most conservative module sets the voltages; the currents add up in parallel.
            charge_voltage_v=min(lim.charge_voltage_mv for lim in limits) / 1000.0,
            discharge_voltage_v=max(lim.discharge_voltage_mv for lim in limits) / 1000.0,
            charge_current_a=round(sum(lim.charge_current_da for lim in limits) / 10.0, 1),
            discharge_current_a=round(sum(lim.discharge_current_da for lim in limits) / 10.0, 1),
            charge_allowed=all(lim.charge_enabled for lim in limits),
            discharge_allowed=all(lim.discharge_enabled for lim in limits),
            force_charge=any(lim.force_charge for lim in limits),
        ),
        modules=modules,
        alarms=tuple(f"module{m.index}_{name}" for m in modules for name in m.alarms),
    )
