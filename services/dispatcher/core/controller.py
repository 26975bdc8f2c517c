"""The real-time controller: ``control(snapshot, plan, memory, params) -> (decision, memory)``.

Runs on every meter update. Pure: the time comes in the snapshot, the past in ``memory``. The
battery setpoint is built in a fixed order of goals and constraints, highest priority last so
it wins: goal of the mode (plan step, zero grid, forced power) -> export limit -> device and BMS
limits -> SoC band (reserve, ceiling) -> mains top-up below the floor -> dwell (no reversal sooner
than ``dwell_s`` after the last) -> ramp (magnitude grows at most ``ramp_w_per_s``) -> deadband
(changes under ``deadband_w`` are not sent) -> quantisation toward zero. Every decision carries the
reason code of the step that shaped it and the numbers behind it.

Sign convention: battery discharge ``+``, charge ``-``; grid import ``+``, export ``-``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from shared.config import DispatcherConfig, LoadConfig, OngridConfig
from shared.config.loads import DiverterLoad, EvLoad, HeatPumpLoad
from shared.messages import (
    CommandMode,
    DispatcherDecision,
    DispatcherModeName,
    Intent,
    Setpoints,
)

from .arbiter import LoadsOutcome, arbitrate
from .battery import BatteryModel
from .failsafe import stale_inputs
from .planner import Schedule
from .snapshot import Snapshot

__all__ = ["ControlParams", "Decision", "Memory", "control", "mode_finished"]


@dataclass(frozen=True)
class ControlParams:
    battery: BatteryModel
    deadband_w: float = 100.0
    dwell_s: float = 300.0
    ramp_w_per_s: float = 200.0
    quantum_w: float = 50.0
    stale_after_s: float = 60.0
    export_limit_w: float | None = None
    top_up_margin_pct: float = 5.0
    top_up_power_w: float = 1000.0
    battery_priority: int = 10
    surplus_on_w: float = 200.0
    loads: tuple[DiverterLoad | HeatPumpLoad | EvLoad, ...] = ()

    @classmethod
    def from_config(cls, cfg: OngridConfig, battery: BatteryModel) -> ControlParams:
        return cls.from_section(cfg.dispatcher, battery, tuple(cfg.loads))

    @classmethod
    def from_section(
        cls, d: DispatcherConfig, battery: BatteryModel, loads: tuple[LoadConfig, ...] = ()
    ) -> ControlParams:
        return cls(
            battery=battery,
            deadband_w=d.deadband_w,
            dwell_s=d.dwell_s,
            ramp_w_per_s=d.ramp_w_per_s,
            quantum_w=d.quantum_w,
            stale_after_s=d.stale_after_s,
            export_limit_w=d.export_limit_w,
            top_up_margin_pct=d.top_up_margin_pct,
            top_up_power_w=d.top_up_power_w,
            battery_priority=d.battery_priority,
            surplus_on_w=d.surplus_on_w,
            loads=loads,
        )


@dataclass(frozen=True)
class Memory:
    """What the controller carries from one call to the next."""

    setpoint_w: float = 0.0
    at: datetime | None = None
    direction: int = 0  # sign of the last non-zero setpoint
    direction_since: datetime | None = None
    topping_up: bool = False
    commanding: bool = False
    loads_on: tuple[tuple[str, bool], ...] = ()
    # Heat-pump battery budgets: (load id, period start, Wh used from the battery in the period).
    budgets: tuple[tuple[str, datetime, float], ...] = ()


@dataclass(frozen=True)
class Decision:
    """One output of ``control``. ``command`` None with ``commanding`` False: hand back."""

    mode: str
    battery_w: float
    command: CommandMode | None
    intent: Intent
    reason: str
    numbers: Mapping[str, float] = field(default_factory=dict)
    loads_on: Mapping[str, bool] = field(default_factory=dict)
    commanding: bool = True
    detail: str | None = None
    mode_finished: bool = False

    def setpoints(self) -> Setpoints:
        return Setpoints(
            inverter_mode=self.command,
            battery_power_w=self.battery_w,
            loads_on=dict(self.loads_on),
        )

    def to_message(self, ts: datetime, plan_id: str | None = None) -> DispatcherDecision:
        return DispatcherDecision(
            ts=ts,
            mode=self.mode,
            setpoints=self.setpoints(),
            reason=self.reason,
            detail=self.detail,
            numbers={k: float(v) for k, v in self.numbers.items() if math.isfinite(v)},
            plan_id=plan_id,
            commanding=self.commanding,
        )


def mode_finished(snap: Snapshot, battery: BatteryModel) -> bool:
    """A timed or SoC-targeted mode has run its course (then auto resumes)."""
    mode = snap.mode
    if mode.until is not None and snap.now >= mode.until:
        return True
    # A target beyond what the controller will ever reach (above the ceiling, below the reserve)
    # ends where the controller stops, or the mode would park the battery idle for good.
    if mode.mode is DispatcherModeName.FORCE_CHARGE:
        target = min(mode.target_soc_pct if mode.target_soc_pct is not None else 100.0, battery.ceiling_pct)
        bms_full = snap.charge_limit_w is not None and snap.charge_limit_w <= 0
        return snap.soc_pct >= target or bms_full
    if mode.mode is DispatcherModeName.FORCE_DISCHARGE:
        target = max(mode.target_soc_pct if mode.target_soc_pct is not None else 0.0, battery.reserve_pct)
        bms_empty = snap.discharge_limit_w is not None and snap.discharge_limit_w <= 0
        return snap.soc_pct <= target or bms_empty
    return False


def _goal(
    mode: DispatcherModeName, snap: Snapshot, plan: Schedule | None, zero_grid: float, b: BatteryModel
) -> tuple[float, Intent, str, dict[str, float]]:
    """What the mode wants before any limit: (battery W, intent, reason, numbers)."""
    numbers: dict[str, float] = {"zero_grid_w": zero_grid}
    if mode is DispatcherModeName.SELF_USE:
        return zero_grid, Intent.SELF_USE, "self_use", numbers
    if mode is DispatcherModeName.HOLD:
        return 0.0, Intent.HOLD, "hold", numbers
    if mode is DispatcherModeName.FORCE_CHARGE:
        power = snap.mode.power_w if snap.mode.power_w is not None else b.max_charge_w
        return -power, Intent.CHARGE, "force_charge", numbers
    if mode is DispatcherModeName.FORCE_DISCHARGE:
        power = snap.mode.power_w if snap.mode.power_w is not None else b.max_discharge_w
        return power, Intent.DISCHARGE, "force_discharge", numbers
    # auto: track the plan
    k = plan.index_at(snap.now) if plan is not None else None
    if plan is None or k is None:
        return zero_grid, Intent.SELF_USE, "no_plan", numbers
    planned_b, planned_g = float(plan.battery_w[k]), float(plan.grid_w[k])
    intent = plan.intents[k]
    numbers.update(planned_battery_w=planned_b, planned_grid_w=planned_g, plan_soc_end_pct=float(plan.soc_pct_end[k]))
    if intent is Intent.CHARGE or intent is Intent.DISCHARGE:
        return planned_b, intent, "plan_track", numbers
    if intent is Intent.HOLD:
        return 0.0, intent, "plan_hold", numbers
    # Self-use step. When the plan rations (discharges while still importing, or charges while
    # still exporting) it caps the battery at the planned power; else it zeroes the grid.
    if planned_b > 0 and planned_g > 0:
        return min(zero_grid, planned_b), intent, "plan_self_use", numbers
    if planned_b < 0 and planned_g < 0:
        return max(zero_grid, planned_b), intent, "plan_self_use", numbers
    return zero_grid, intent, "plan_self_use", numbers


def _quantise(value: float, quantum: float) -> float:
    # Toward zero, so a quantised setpoint never exceeds the limit it was clamped to.
    return math.trunc(value / quantum) * quantum if quantum > 0 else value


def _command(battery_w: float) -> CommandMode:
    if battery_w > 0:
        return CommandMode.DISCHARGE
    if battery_w < 0:
        return CommandMode.CHARGE
    return CommandMode.STANDBY


def control(snap: Snapshot, plan: Schedule | None, memory: Memory, params: ControlParams) -> tuple[Decision, Memory]:
    """One decision. See the module docstring for the order of goals and limits."""
    b = params.battery
    stale = stale_inputs(snap, params.stale_after_s)
    if stale is not None:
        decision = Decision(
            mode=snap.mode.mode.value,
            battery_w=0.0,
            command=None,
            intent=Intent.OFF,
            reason="stale_inputs",
            detail=stale,
            commanding=False,
        )
        return decision, replace(memory, commanding=False, at=snap.now, setpoint_w=0.0)

    finished = mode_finished(snap, b)
    mode = DispatcherModeName.AUTO if finished else snap.mode.mode
    if mode is DispatcherModeName.OFF:
        # The inverter runs on its own, except that the mains top-up below the floor is always on.
        topping_up = snap.soc_pct < b.floor_pct or (
            memory.topping_up and snap.soc_pct < b.floor_pct + params.top_up_margin_pct
        )
        if topping_up:
            charge_max = b.max_charge_w
            if snap.charge_limit_w is not None:
                charge_max = min(charge_max, max(0.0, snap.charge_limit_w))
            power = _quantise(min(params.top_up_power_w, charge_max), params.quantum_w)
            decision = Decision(
                mode=mode.value,
                battery_w=-power + 0.0,
                command=_command(-power),
                intent=Intent.CHARGE,
                reason="top_up_floor",
                detail="mode off, but the battery is below its floor: mains top-up",
                numbers={"soc_pct": snap.soc_pct, "floor_pct": b.floor_pct, "setpoint_w": -power},
                commanding=True,
            )
            charging = -1 if power else memory.direction
            return decision, replace(
                memory, commanding=True, at=snap.now, setpoint_w=-power + 0.0, topping_up=True,
                direction=charging,
                direction_since=memory.direction_since if memory.direction == charging else snap.now,
            )
        decision = Decision(
            mode=mode.value,
            battery_w=0.0,
            command=None,
            intent=Intent.OFF,
            reason="mode_off",
            commanding=False,
        )
        return decision, replace(memory, commanding=False, at=snap.now, setpoint_w=0.0, topping_up=False)

    loads: LoadsOutcome = arbitrate(snap, memory, params)
    # What the battery must do to bring the grid to zero, leaving out the flexible loads it may
    # not feed: with the immersion excluded, the battery never chases a diverter.
    zero_grid = snap.battery_w + snap.grid_w - loads.not_from_battery_w
    if zero_grid < 0 and params.loads:
        # Charge only from the surplus left after loads ranked above the battery.
        zero_grid = max(zero_grid, -loads.battery_share_w)
    goal, intent, reason, numbers = _goal(mode, snap, plan, zero_grid, b)
    numbers.update(
        goal_w=goal,
        soc_pct=snap.soc_pct,
        grid_w=snap.grid_w,
        battery_w=snap.battery_w,
        not_from_battery_w=loads.not_from_battery_w,
    )
    target = goal

    # Export limit: the battery may have to charge to keep the export within it.
    if params.export_limit_w is not None:
        most = snap.battery_w + snap.grid_w + params.export_limit_w
        if target > most:
            target, reason = most, "export_limit"

    # Hard limits: device, BMS, SoC band.
    charge_max, charge_why = b.max_charge_w, "device_limit"
    discharge_max, discharge_why = b.max_discharge_w, "device_limit"
    if snap.charge_limit_w is not None and snap.charge_limit_w < charge_max:
        charge_max, charge_why = max(0.0, snap.charge_limit_w), "bms_limit"
    if snap.discharge_limit_w is not None and snap.discharge_limit_w < discharge_max:
        discharge_max, discharge_why = max(0.0, snap.discharge_limit_w), "bms_limit"
    if snap.soc_pct >= b.ceiling_pct:
        charge_max, charge_why = 0.0, "soc_ceiling"
    if snap.soc_pct <= b.reserve_pct:
        discharge_max, discharge_why = 0.0, "reserve_floor"
    numbers.update(charge_max_w=charge_max, discharge_max_w=discharge_max)
    if target > discharge_max:
        target, reason = discharge_max, discharge_why
    elif target < -charge_max:
        target, reason = -charge_max, charge_why

    # Mains top-up below the floor, with hysteresis up to floor + margin.
    topping_up = memory.topping_up
    if snap.soc_pct < b.floor_pct:
        topping_up = True
    elif snap.soc_pct >= b.floor_pct + params.top_up_margin_pct:
        topping_up = False
    forced = False
    if topping_up:
        power = min(params.top_up_power_w, charge_max)
        if target > -power:
            target, reason, intent, forced = -power, "top_up_floor", Intent.CHARGE, True

    safety = forced or reason == "export_limit"
    setpoint = target
    direction = 0 if setpoint == 0 else (1 if setpoint > 0 else -1)

    # Dwell: no reversal of direction within dwell_s of the last one (safety moves excepted).
    if (
        not safety
        and direction != 0
        and memory.direction != 0
        and direction != memory.direction
        and memory.direction_since is not None
        and (snap.now - memory.direction_since).total_seconds() < params.dwell_s
    ):
        setpoint, reason = 0.0, "dwell"
        direction = 0

    # Ramp: growth of magnitude is limited; shrinking (toward safety) is immediate.
    if memory.at is not None and not safety:
        dt = max(0.0, (snap.now - memory.at).total_seconds())
        step = params.ramp_w_per_s * dt
        last = memory.setpoint_w if (memory.setpoint_w > 0) == (setpoint > 0) else 0.0
        if abs(setpoint) > abs(last) + step:
            setpoint = math.copysign(abs(last) + step, setpoint)
            reason = "ramp"

    setpoint = _quantise(setpoint, params.quantum_w)

    # Deadband: keep the last setpoint when the change is small and the last is still allowed.
    last = memory.setpoint_w
    if (
        memory.commanding
        and abs(setpoint - last) < params.deadband_w
        and -charge_max <= last <= discharge_max
        and not (topping_up and last > -min(params.top_up_power_w, charge_max))
        and (last == 0 or (1 if last > 0 else -1) == memory.direction)
    ):
        if setpoint != last:
            reason = "deadband"
        setpoint = last

    setpoint = max(-charge_max, min(discharge_max, setpoint)) + 0.0  # + 0.0: no -0.0 on the wire
    direction = 0 if setpoint == 0 else (1 if setpoint > 0 else -1)
    since: datetime | None
    if direction != 0 and direction != memory.direction:
        new_direction, since = direction, snap.now
    else:
        new_direction, since = memory.direction, memory.direction_since
    numbers["setpoint_w"] = setpoint
    decision = Decision(
        mode=mode.value,
        battery_w=setpoint,
        command=_command(setpoint),
        intent=intent,
        reason=reason,
        numbers=numbers,
        loads_on=dict(loads.on),
        commanding=True,
        mode_finished=finished,
    )
    new_memory = Memory(
        setpoint_w=setpoint,
        at=snap.now,
        direction=new_direction,
        direction_since=since,
        topping_up=topping_up,
        commanding=True,
        loads_on=tuple(sorted(loads.on.items())),
        budgets=loads.budgets,
    )
    return decision, new_memory
