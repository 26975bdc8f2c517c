"""Pure: what the BMS said -> ``BatteryState``. No I/O, no clock.

Sign: Pylontech reports current charge ``+``; the project's convention is discharge ``+``, so
every current and power is flipped here and nowhere else. Modules of a stack are in parallel:
currents and current limits add, the pack voltage is the modules' mean.

Vendors differ (DESIGN.md "Safety and failure"): some Pylontech firmware sends the discharge
current limit as a negative number (python-pylontech's README shows ``DischargeCurrentLimit =
-10.0``), so a current limit is read as a magnitude, whatever its sign. A value no battery can
have is dropped field by field: the field is published as ``null``, named in
``quality_flags`` (``module<i>.<field>``), and the rest of the module and the stack is published.
Only when nothing is left to say what the stack's voltage or state of charge is does the poll
fail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from statistics import fmean

from shared.messages import BatteryLimits, BatteryState, CellState, ModuleState
from shared.pylontech import ChargeDischarge, ModuleAlarms, ModuleAnalog

# What a healthy LFP (or any Li-ion) module can report; outside these a value was misread.
CELL_V = (1.5, 4.5)
MODULE_V = (20.0, 65.0)
TEMP_C = (-40.0, 100.0)
MAX_CURRENT_A = 500.0
# A BMS may count a little past full before it recalibrates; more than 5 % is a misread.
OVERCOUNT = 1.05


class ImplausibleReading(ValueError):
    """Nothing plausible is left to describe the stack with: the poll is not published."""


@dataclass(frozen=True, slots=True)
class ModuleReading:
    address: int
    analog: ModuleAnalog
    alarms: ModuleAlarms
    limits: ChargeDischarge


@dataclass(frozen=True, slots=True)
class Dropped:
    """One value the BMS sent that no battery can have; it is not published."""

    module: int
    address: int
    field: str
    value: float
    low: float
    high: float

    @property
    def flag(self) -> str:
        return f"module{self.module}.{self.field}"

    @property
    def message(self) -> str:
        return (
            f"module {self.module} (address {self.address}): {self.field}={self.value:g} "
            f"outside {self.low:g}..{self.high:g}; field dropped"
        )


class _Screen:
    """Checks one module's values, remembering what it dropped."""

    def __init__(self, index: int, address: int) -> None:
        self.index = index
        self.address = address
        self.dropped: list[Dropped] = []

    def keep(self, name: str, value: float, low: float, high: float) -> float | None:
        if math.isfinite(value) and low <= value <= high:
            return value
        self.dropped.append(Dropped(self.index, self.address, name, value, low, high))
        return None


@dataclass(frozen=True, slots=True)
class ScreenedModule:
    state: ModuleState
    charge_current_a: float | None
    discharge_current_a: float | None
    charge_voltage_v: float | None
    discharge_voltage_v: float | None
    cell_mv: tuple[int, ...]
    cell_temps_c: tuple[float, ...]
    remaining_mah: int | None
    total_mah: int | None
    flags: ChargeDischarge
    dropped: tuple[Dropped, ...]


def screen_module(index: int, reading: ModuleReading) -> ScreenedModule:
    """One module's state with every implausible value dropped and named."""
    a, lim = reading.analog, reading.limits
    s = _Screen(index, reading.address)
    if not a.cell_mv:
        s.dropped.append(Dropped(index, reading.address, "cell_count", 0, 1, math.inf))
    cells = [s.keep(f"cell{i}_voltage_v", v, *CELL_V) for i, v in enumerate(a.cell_voltages_v, start=1)]
    temps = [s.keep(f"temp{i}_c", t, *TEMP_C) for i, t in enumerate(a.temps_c, start=1)]
    voltage = s.keep("voltage_v", a.voltage_v, *MODULE_V)
    current = s.keep("current_a", a.current_a, -MAX_CURRENT_A, MAX_CURRENT_A)
    total = s.keep("full_ah", a.total_ah, 0.001, math.inf)
    remaining = s.keep("remaining_ah", a.remaining_ah, 0.0, (total if total is not None else math.inf) * OVERCOUNT)
    # Either sign: the limit is a magnitude (vendor convention, see the module docstring).
    charge_a = s.keep("charge_current_limit_a", abs(lim.charge_current_da) / 10, 0.0, MAX_CURRENT_A)
    discharge_a = s.keep("discharge_current_limit_a", abs(lim.discharge_current_da) / 10, 0.0, MAX_CURRENT_A)
    charge_v = s.keep("charge_voltage_limit_v", lim.charge_voltage_mv / 1000, *MODULE_V)
    discharge_v = s.keep("discharge_voltage_limit_v", lim.discharge_voltage_mv / 1000, *MODULE_V)
    good_mv = tuple(mv for mv, v in zip(a.cell_mv, cells, strict=True) if v is not None)
    soc = None
    if remaining is not None and total is not None:
        soc = min(100.0, 100.0 * remaining / total)
    state = ModuleState(
        index=index,
        voltage_v=voltage,
        current_a=None if current is None else -current,
        soc_pct=soc,
        remaining_ah=remaining,
        full_ah=total,
        cycles=a.cycles,
        temps_c=tuple(temps),
        cells=tuple(CellState(voltage_v=v) for v in cells),
        cell_spread_mv=float(max(good_mv) - min(good_mv)) if good_mv else None,
        alarms=reading.alarms.names(),
    )
    # The first temperature is the BMS board, not a cell.
    cell_temps = temps[1:] if len(temps) > 1 else temps
    return ScreenedModule(
        state=state,
        charge_current_a=charge_a,
        discharge_current_a=discharge_a,
        charge_voltage_v=charge_v,
        discharge_voltage_v=discharge_v,
        cell_mv=good_mv,
        cell_temps_c=tuple(t for t in cell_temps if t is not None),
        remaining_mah=a.remaining_mah if soc is not None else None,
        total_mah=a.total_mah if soc is not None else None,
        flags=lim,
        dropped=tuple(s.dropped),
    )


def screen(readings: Sequence[ModuleReading]) -> list[ScreenedModule]:
    return [screen_module(i, r) for i, r in enumerate(readings)]


def build_state(
    device: str, readings: Sequence[ModuleReading], ts: datetime, *, model: str = "pylontech_rs485"
) -> BatteryState:
    """The stack's state from one poll of every module. Raises ``ImplausibleReading`` only when no
    module gave a plausible voltage or state of charge."""
    if not readings:
        raise ImplausibleReading("no module was read")
    return state_of(device, screen(readings), ts, model=model)


def _sum_or_none(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _nothing_left(what: str, screened: Sequence[ScreenedModule]) -> str:
    why = "; ".join(d.message for s in screened for d in s.dropped)
    return f"no module reported a plausible {what}: {why}"


def state_of(
    device: str, screened: Sequence[ScreenedModule], ts: datetime, *, model: str = "pylontech_rs485"
) -> BatteryState:
    modules = tuple(s.state for s in screened)
    volts = [m.voltage_v for m in modules if m.voltage_v is not None]
    if not volts:
        raise ImplausibleReading(_nothing_left("voltage", screened))
    with_soc = [s for s in screened if s.remaining_mah is not None and s.total_mah is not None]
    if not with_soc:
        raise ImplausibleReading(_nothing_left("state of charge", screened))
    voltage = fmean(volts)
    # An unknown module current makes the stack's current unknown: a partial sum is not published.
    current = _sum_or_none([m.current_a for m in modules])
    power = None
    if current is not None:
        # Modules in parallel share the bus: a module whose voltage was dropped is at the stack's.
        power = sum((m.voltage_v if m.voltage_v is not None else voltage) * (m.current_a or 0.0) for m in modules)
    remaining = sum(s.remaining_mah or 0 for s in with_soc)
    total = sum(s.total_mah or 0 for s in with_soc)
    all_cells_mv = [mv for s in screened for mv in s.cell_mv]
    cell_temps = [t for s in screened for t in s.cell_temps_c]
    charge_v = [s.charge_voltage_v for s in screened if s.charge_voltage_v is not None]
    discharge_v = [s.discharge_voltage_v for s in screened if s.discharge_voltage_v is not None]
    dropped = [d for s in screened for d in s.dropped]
    return BatteryState(
        ts=ts,
        device=device,
        model=model,
        voltage_v=round(voltage, 3),
        current_a=None if current is None else round(current, 1),
        power_w=None if power is None else round(power, 1),
        soc_pct=round(min(100.0, 100.0 * remaining / total), 2),
        temp_min_c=min(cell_temps) if cell_temps else None,
        temp_max_c=max(cell_temps) if cell_temps else None,
        cycles=max(m.cycles for m in modules if m.cycles is not None),
        cell_min_v=min(all_cells_mv) / 1000.0 if all_cells_mv else None,
        cell_max_v=max(all_cells_mv) / 1000.0 if all_cells_mv else None,
        cell_spread_mv=float(max(all_cells_mv) - min(all_cells_mv)) if all_cells_mv else None,
        limits=BatteryLimits(
            # The most conservative module sets the voltages; the currents add up in parallel, and a
            # module whose limit was dropped adds nothing (the stack may do less, never more).
            charge_voltage_v=min(charge_v) if charge_v else None,
            discharge_voltage_v=max(discharge_v) if discharge_v else None,
            charge_current_a=round(sum(s.charge_current_a or 0.0 for s in screened), 1),
            discharge_current_a=round(sum(s.discharge_current_a or 0.0 for s in screened), 1),
            charge_allowed=all(s.flags.charge_enabled for s in screened),
            discharge_allowed=all(s.flags.discharge_enabled for s in screened),
            force_charge=any(s.flags.force_charge for s in screened),
        ),
        modules=modules,
        alarms=tuple(f"module{m.index}_{name}" for m in modules for name in m.alarms),
        quality_flags=tuple(d.flag for d in dropped),
    )
