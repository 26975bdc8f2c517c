"""Pure: what the inverter may be told to do right now, and the setpoint a command becomes.

A command is clamped, in this order, to (1) the inverter's configured limits (and the passive-mode
registers' own bounds from the register map), (2) the BMS: its charge/discharge flags, its current
limits times the pack voltage, and the temperature windows in which charging and discharging are
allowed. Setpoints are then quantised to ``quantum_w`` (fewer distinct values -> fewer writes),
rounding to the nearest step but never past a limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from shared.config import InverterConfig
from shared.messages import BatteryState, CommandMode, InverterCommand
from shared.registers import RegisterMap

# Register fields of the ME3000SP passive mode (shared/registers/maps/sofar_me3000sp.yaml).
STANDBY = "passive_standby"
CHARGE = "passive_charge_w"
DISCHARGE = "passive_discharge_w"
AUTO = "passive_auto_grid_w"

# Pylontech US2000/US3000 datasheets: charge 0..50 degC, discharge -10..50 degC. The BMS reports
# its own limits too (0x92 currents drop to 0 outside them); these catch a BMS that lags.
CHARGE_TEMP_C = (0.0, 50.0)
DISCHARGE_TEMP_C = (-10.0, 50.0)
# BMS limits older than this are not used: the BMS bridge polls every 10 s by default.
BMS_MAX_AGE_S = 120.0


@dataclass(frozen=True, slots=True)
class InverterLimits:
    max_charge_w: float
    max_discharge_w: float
    quantum_w: float
    grid_target_max_w: float = 9999.0

    @classmethod
    def from_config(cls, cfg: InverterConfig, regmap: RegisterMap) -> InverterLimits:
        """Config limits, never above what the passive-mode registers accept."""

        def cap(field: str, value: float) -> float:
            point = regmap.point(field)
            return min(value, point.write_max) if point.write_max is not None else value

        auto = regmap.point(AUTO)
        grid_max = min(abs(auto.write_min or 9999.0), abs(auto.write_max or 9999.0))
        return cls(
            max_charge_w=cap(CHARGE, cfg.max_charge_w),
            max_discharge_w=cap(DISCHARGE, cfg.max_discharge_w),
            quantum_w=cfg.quantum_w,
            grid_target_max_w=grid_max,
        )


@dataclass(frozen=True, slots=True)
class BmsLimits:
    """The BMS's word on what the battery may do now, in W."""

    charge_w: float
    discharge_w: float
    charge_allowed: bool = True
    discharge_allowed: bool = True
    temp_min_c: float | None = None
    temp_max_c: float | None = None

    @classmethod
    def from_state(cls, state: BatteryState) -> BmsLimits:
        lim = state.limits
        return cls(
            charge_w=max(0.0, lim.charge_current_a * state.voltage_v),
            discharge_w=max(0.0, lim.discharge_current_a * state.voltage_v),
            charge_allowed=lim.charge_allowed,
            discharge_allowed=lim.discharge_allowed,
            temp_min_c=state.temp_min_c,
            temp_max_c=state.temp_max_c,
        )


def fresh_bms(state: BatteryState | None, now: datetime, max_age_s: float = BMS_MAX_AGE_S) -> BmsLimits | None:
    """BMS limits from the latest ``BatteryState``, or None when there is none or it is stale."""
    if state is None or (now - state.ts).total_seconds() > max_age_s:
        return None
    return BmsLimits.from_state(state)


@dataclass(frozen=True, slots=True)
class Setpoint:
    """One passive-mode write: which register and what value (W; vendor sign for ``auto``)."""

    mode: CommandMode  # SELF_USE, CHARGE, DISCHARGE, STANDBY or GRID_TARGET
    field: str
    value: int | None = None  # None: the register's constant (standby 0x5555)

    @property
    def battery_power_w(self) -> float | None:
        """The battery setpoint in the AC-bus sign (discharge +), when this mode fixes one."""
        if self.mode is CommandMode.CHARGE:
            return -float(self.value or 0)
        if self.mode is CommandMode.DISCHARGE:
            return float(self.value or 0)
        if self.mode is CommandMode.STANDBY:
            return 0.0
        return None

    @property
    def grid_target_w(self) -> float | None:
        """Grid import target (import +); the register holds the vendor sign (+ discharge)."""
        return -float(self.value or 0) if self.mode is CommandMode.GRID_TARGET else None

    @property
    def passive(self) -> bool:
        """Whether this keeps the inverter in passive mode (needing heartbeats and a lease)."""
        return self.mode is not CommandMode.SELF_USE

    def describe(self) -> str:
        if self.mode is CommandMode.GRID_TARGET:
            return f"grid_target {self.grid_target_w:+.0f} W"
        if self.mode in (CommandMode.CHARGE, CommandMode.DISCHARGE):
            return f"{self.mode.value} {self.value} W"
        return self.mode.value


SELF_USE = Setpoint(CommandMode.SELF_USE, AUTO, 0)
STANDBY_SETPOINT = Setpoint(CommandMode.STANDBY, STANDBY, None)


@dataclass(frozen=True, slots=True)
class Clamped:
    setpoint: Setpoint
    clamped: bool
    reasons: tuple[str, ...] = ()


def quantise(power_w: float, quantum_w: float, cap_w: float) -> int:
    """Nearest multiple of ``quantum_w`` to a non-negative power, never above ``cap_w``."""
    if power_w <= 0 or cap_w <= 0:
        return 0
    top = math.floor(cap_w / quantum_w + 1e-9) * quantum_w
    return int(min(round(power_w / quantum_w) * quantum_w, top))


def _window(temp_min: float | None, temp_max: float | None, window: tuple[float, float]) -> str | None:
    if temp_min is not None and temp_min < window[0]:
        return f"battery at {temp_min:g} degC, below {window[0]:g} degC"
    if temp_max is not None and temp_max > window[1]:
        return f"battery at {temp_max:g} degC, above {window[1]:g} degC"
    return None


def _battery(mode: CommandMode, power_w: float, inverter_cap: float, quantum: float, bms: BmsLimits | None) -> Clamped:
    """Charge or discharge: cap by the inverter, then the BMS, then quantise."""
    charging = mode is CommandMode.CHARGE
    word = "charge" if charging else "discharge"
    reasons: list[str] = []
    cap, why = inverter_cap, f"inverter {word} limit {inverter_cap:g} W"
    if bms is not None:
        allowed = bms.charge_allowed if charging else bms.discharge_allowed
        too_hot_or_cold = _window(bms.temp_min_c, bms.temp_max_c, CHARGE_TEMP_C if charging else DISCHARGE_TEMP_C)
        bms_w = bms.charge_w if charging else bms.discharge_w
        if not allowed:
            cap, why = 0.0, f"BMS forbids {word}"
        elif too_hot_or_cold is not None:
            cap, why = 0.0, f"{too_hot_or_cold}: no {word}"
        elif bms_w < cap:
            cap, why = bms_w, f"BMS {word} limit {bms_w:.0f} W"
    clamped = power_w > cap
    if clamped:
        reasons.append(f"{word} {power_w:g} W clamped: {why}")
    value = quantise(min(power_w, cap), quantum, cap)
    if value == 0:
        return Clamped(STANDBY_SETPOINT, clamped, tuple(reasons))
    return Clamped(Setpoint(mode, CHARGE if charging else DISCHARGE, value), clamped, tuple(reasons))


def _blocked_directions(bms: BmsLimits) -> list[str]:
    """Why the BMS blocks charge or discharge right now (flags, temperature windows)."""
    blocked = []
    for allowed, word, window in (
        (bms.charge_allowed, "charge", CHARGE_TEMP_C),
        (bms.discharge_allowed, "discharge", DISCHARGE_TEMP_C),
    ):
        if not allowed:
            blocked.append(f"BMS forbids {word}")
        elif (outside := _window(bms.temp_min_c, bms.temp_max_c, window)) is not None:
            blocked.append(f"{outside}: no {word}")
    return blocked


def clamp(command: InverterCommand, limits: InverterLimits, bms: BmsLimits | None) -> Clamped:
    """The setpoint a command becomes under the inverter's and the BMS's limits."""
    mode = command.mode
    if mode in (CommandMode.AUTO, CommandMode.SELF_USE):
        return Clamped(SELF_USE, False)
    if mode is CommandMode.STANDBY:
        return Clamped(STANDBY_SETPOINT, False)
    if mode is CommandMode.CHARGE:
        return _battery(mode, command.power_w, limits.max_charge_w, limits.quantum_w, bms)
    if mode is CommandMode.DISCHARGE:
        return _battery(mode, command.power_w, limits.max_discharge_w, limits.quantum_w, bms)
    # grid_target: the inverter steers the battery itself to hold the grid at the target; the
    # vendor register takes the opposite sign (+ pushes the battery to discharge/export).
    # In this mode the inverter picks the battery's direction itself, so the bridge cannot cap one
    # direction: when the BMS blocks either (flag or temperature), the command becomes standby.
    # (The inverter applies the BMS's current limits itself over its own BMS link.)
    if bms is not None:
        blocked = _blocked_directions(bms)
        if blocked:
            return Clamped(STANDBY_SETPOINT, True, (f"grid target refused, standby: {'; '.join(blocked)}",))
    target = command.grid_target_w
    cap = limits.grid_target_max_w
    clamped = abs(target) > cap
    reasons = (f"grid target {target:g} W clamped to +-{cap:g} W",) if clamped else ()
    magnitude = quantise(abs(target), limits.quantum_w, cap)
    vendor = -magnitude if target > 0 else magnitude
    return Clamped(Setpoint(CommandMode.GRID_TARGET, AUTO, vendor), clamped, reasons)
