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

from shared.battery_limits import BmsLimits
from shared.config import InverterConfig
from shared.messages import BatteryState, CommandMode, InverterCommand
from shared.registers import RegisterMap

# Register fields of the ME3000SP passive mode (shared/registers/maps/sofar_me3000sp.yaml).
STANDBY = "passive_standby"
CHARGE = "passive_charge_w"
DISCHARGE = "passive_discharge_w"
AUTO = "passive_auto_grid_w"

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


def _battery(mode: CommandMode, power_w: float, inverter_cap: float, quantum: float, bms: BmsLimits | None) -> Clamped:
    """Charge or discharge: cap by the inverter, then the BMS, then quantise."""
    charging = mode is CommandMode.CHARGE
    word = "charge" if charging else "discharge"
    reasons: list[str] = []
    cap, why = inverter_cap, f"inverter {word} limit {inverter_cap:g} W"
    if bms is not None:
        blocked = bms.blocked(charging)
        bms_w = bms.cap_w(charging)
        if blocked is not None:
            cap, why = 0.0, blocked
        elif bms_w < cap:
            cap, why = bms_w, f"BMS {word} limit {bms_w:.0f} W"
    clamped = power_w > cap
    if clamped:
        reasons.append(f"{word} {power_w:g} W clamped: {why}")
    value = quantise(min(power_w, cap), quantum, cap)
    if value == 0:
        return Clamped(STANDBY_SETPOINT, clamped, tuple(reasons))
    return Clamped(Setpoint(mode, CHARGE if charging else DISCHARGE, value), clamped, tuple(reasons))


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
        blocked = [why for why in (bms.blocked(True), bms.blocked(False)) if why is not None]
        if blocked:
            return Clamped(STANDBY_SETPOINT, True, (f"grid target refused, standby: {'; '.join(blocked)}",))
    target = command.grid_target_w
    cap = limits.grid_target_max_w
    clamped = abs(target) > cap
    reasons = (f"grid target {target:g} W clamped to +-{cap:g} W",) if clamped else ()
    magnitude = quantise(abs(target), limits.quantum_w, cap)
    vendor = -magnitude if target > 0 else magnitude
    return Clamped(Setpoint(CommandMode.GRID_TARGET, AUTO, vendor), clamped, reasons)
