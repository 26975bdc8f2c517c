"""The real-time controller: ``control(snapshot, plan, memory, params) -> (decision, memory)``.

Runs on every meter update. Pure: the time comes in the snapshot, the past in ``memory``. First the
failsafe (stale inputs: hand back) and mode ``off`` (hand back, but top up below the floor); then
the battery setpoint passes eight steps, each a small function below, a later one overriding an
earlier one, with the hand-back decision between the fourth and the fifth:

1. ``goal``: what the mode wants (plan step, zero grid, forced power);
2. ``export_limit``: charge (or discharge less) to keep the export within the limit;
3. ``limits``: device, BMS and SoC band (reserve, ceiling; ``soc_limits`` owns the band);
4. ``top_up``: mains top-up below the floor;
   ``hand_back``: when what is left is zeroing the grid, which the inverter's own self-use does by
   its CT, no setpoint is written: the inverter runs its self-use (``commanding`` False) until a
   step above needs a setpoint again;
5. ``dwell``: no reversal sooner than ``dwell_s`` after the last;
6. ``ramp``: the magnitude grows at most ``ramp_w_per_s``;
7. ``quantise``: toward zero, to ``quantum_w``;
8. ``deadband``: changes under ``deadband_w`` are not sent.

Dwell, ramp and deadband shape automatic decisions only: a person's request (``ModeState.requested_at``)
goes out as asked at the next cycle. Below the grid meter's accurate range the deadband widens to
the reading's uncertainty. Every decision carries the reason code of the step that last shaped it
and the numbers behind it.

Sign convention: battery discharge ``+``, charge ``-``; grid import ``+``, export ``-``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared.config import DispatcherConfig, LoadConfig, OngridConfig
from shared.config.loads import DiverterLoad, EvLoad, HeatPumpLoad
from shared.energy import soc_limits
from shared.energy.battery import BatteryModel
from shared.messages import (
    CommandMode,
    DispatcherDecision,
    DispatcherModeName,
    Intent,
    Setpoints,
)

from .arbiter import LoadsOutcome, arbitrate
from .diverter_guard import GuardMemory, GuardOutcome, GuardParams, guard
from .failsafe import stale_inputs
from .heat_pump import Budget
from .planner import Schedule
from .snapshot import Snapshot

__all__ = [
    "ControlParams",
    "Decision",
    "Limits",
    "Memory",
    "Target",
    "battery_free",
    "battery_seen",
    "control",
    "deadband",
    "deadband_width",
    "diverter_guard_params",
    "dwell",
    "export_limit",
    "goal",
    "hand_back",
    "hold_range",
    "limits",
    "mode_finished",
    "quantise",
    "ramp",
    "top_up",
]


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
    inverter_self_use: bool = True
    # Where the loads' local times of day are read (a heat pump's run window): ``tariff.timezone``.
    timezone: str = "UTC"

    @classmethod
    def from_config(cls, cfg: OngridConfig, battery: BatteryModel) -> ControlParams:
        return cls.from_section(cfg.dispatcher, battery, tuple(cfg.loads), timezone=cfg.tariff.timezone)

    @classmethod
    def from_section(
        cls, d: DispatcherConfig, battery: BatteryModel, loads: tuple[LoadConfig, ...] = (), *, timezone: str = "UTC"
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
            inverter_self_use=d.inverter_self_use,
            timezone=timezone,
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
    # Heat-pump battery budgets: Wh each used from the battery in its period (``core.heat_pump``).
    budgets: tuple[Budget, ...] = ()
    # ``ModeState.requested_at`` of the last person's request already acted on.
    request_seen: datetime | None = None
    # When the setpoint last changed (the command that the inverter is following).
    changed_at: datetime | None = None
    # The watch for a CT-driven diverter fed by the battery (``core.diverter_guard``).
    diverter: GuardMemory = field(default_factory=GuardMemory)
    # (discharge stopped at the reserve, charge stopped at the ceiling): ``soc_limits.band_stops``.
    band_stopped: tuple[bool, bool] = (False, False)


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
    # Why a load is on or off when its own rule decided (a heat pump's window, budget, floor).
    load_reasons: Mapping[str, str] = field(default_factory=dict)
    commanding: bool = True
    detail: str | None = None
    mode_finished: bool = False
    # (code, message) of an Event the service publishes with this decision.
    event: tuple[str, str] | None = None

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
        bms_full = snap.charge_limit_w is not None and snap.charge_limit_w <= 0
        return snap.soc_pct >= soc_limits.charge_stops_at_pct(battery, mode.target_soc_pct) or bms_full
    if mode.mode is DispatcherModeName.FORCE_DISCHARGE:
        bms_empty = snap.discharge_limit_w is not None and snap.discharge_limit_w <= 0
        return snap.soc_pct <= soc_limits.discharge_stops_at_pct(battery, mode.target_soc_pct) or bms_empty
    return False


@dataclass(frozen=True)
class Target:
    """The setpoint on its way through the steps: W (discharge ``+``) and the step that last shaped it."""

    w: float
    reason: str


@dataclass(frozen=True)
class Limits:
    """How far the battery may go now, each side with the rule that set it (the reason code)."""

    charge_max_w: float
    discharge_max_w: float
    charge_why: str = "device_limit"
    discharge_why: str = "device_limit"

    def clamp(self, target: Target) -> Target:
        if target.w > self.discharge_max_w:
            return Target(self.discharge_max_w, self.discharge_why)
        if target.w < -self.charge_max_w:
            return Target(-self.charge_max_w, self.charge_why)
        return target

    def bound(self, w: float) -> float:
        return max(-self.charge_max_w, min(self.discharge_max_w, w))


# Modes whose goal is a fixed setpoint a person asked for: there is nothing to smooth.
FIXED_SETPOINT = (DispatcherModeName.FORCE_CHARGE, DispatcherModeName.FORCE_DISCHARGE, DispatcherModeName.HOLD)


# Time an inverter is given to act on a new setpoint (the command's way over the bus and the bridge,
# the inverter's own ramp: seconds) before a grid reading is taken to show it.
INVERTER_SETTLE_S = 10.0

# Goals that zero the grid on the meter's reading (as opposed to a planned or forced power).
ZERO_GRID_GOALS = ("self_use", "no_plan", "plan_self_use")


def battery_free(mode: DispatcherModeName, snap: Snapshot, plan: Schedule | None) -> bool:
    """Whether the mode, or in ``auto`` the plan's step, lets the battery discharge now: not
    ``hold``, ``force_charge``, nor a plan step that holds or charges it (a flexible load that may
    run only on the battery's spare then waits)."""
    if mode in (DispatcherModeName.HOLD, DispatcherModeName.FORCE_CHARGE):
        return False
    if mode is not DispatcherModeName.AUTO or plan is None:
        return True
    k = plan.index_at(snap.now)
    return k is None or plan.intents[k] not in (Intent.HOLD, Intent.CHARGE)


# -- the eight steps, in order -------------------------------------------------------------------


def goal(
    mode: DispatcherModeName, snap: Snapshot, plan: Schedule | None, zero_grid: float, b: BatteryModel
) -> tuple[float, Intent, str, dict[str, float]]:
    """1. What the mode wants before any limit: (battery W, intent, reason, numbers)."""
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


def export_limit(target: Target, snap: Snapshot, limit_w: float | None) -> Target:
    """2. The battery may have to charge (or discharge less) to keep the export within the limit."""
    if limit_w is None:
        return target
    most = snap.battery_w + snap.grid_w + limit_w
    return Target(most, "export_limit") if target.w > most else target


def limits(snap: Snapshot, b: BatteryModel, stopped: tuple[bool, bool] | None = None) -> Limits:
    """3. Device, BMS and SoC band (reserve, ceiling): the most each way, and which rule says so.
    ``stopped``: the band's edges with their hysteresis (``soc_limits.band_stops``); without it,
    the edges alone."""
    low, high = stopped if stopped is not None else soc_limits.band_stops(b, snap.soc_pct, (False, False))
    charge_max, charge_why = b.max_charge_w, "device_limit"
    discharge_max, discharge_why = b.max_discharge_w, "device_limit"
    if snap.charge_limit_w is not None and snap.charge_limit_w < charge_max:
        charge_max, charge_why = max(0.0, snap.charge_limit_w), "bms_limit"
    if snap.discharge_limit_w is not None and snap.discharge_limit_w < discharge_max:
        discharge_max, discharge_why = max(0.0, snap.discharge_limit_w), "bms_limit"
    if high:
        charge_max, charge_why = 0.0, "soc_ceiling"
    if low:
        discharge_max, discharge_why = 0.0, "reserve_floor"
    return Limits(charge_max, discharge_max, charge_why, discharge_why)


def top_up(target: Target, active: bool, power_w: float, lim: Limits) -> Target:
    """4. Mains top-up below the floor (``active`` from ``soc_limits.topping_up``): charge at least
    ``power_w``, within the charge limit."""
    if not active:
        return target
    power = min(power_w, lim.charge_max_w)
    return Target(-power, "top_up_floor") if target.w > -power else target


# Goals that zero the grid, as the inverter's own self-use does by its CT.
ZERO_GRID_GOALS = ("self_use", "plan_self_use", "no_plan")
# Limits the inverter applies by itself in self-use: its rating and its BMS's, over its BMS link.
OWN_LIMITS = ("device_limit", "bms_limit")


def hand_back(target: Target, goal_w: float, goal_reason: str, zero_grid_w: float, ct_zero_grid_w: float,
              topping_up: bool) -> bool:  # fmt: skip
    """Between 4 and 5: whether the inverter's own self-use does what the controller wants, so no
    setpoint needs writing. True when the goal zeroes the grid (not a plan step's power, a plan's
    rationing cap, or a person's fixed power), no flexible load is kept off the battery's target
    (``zero_grid_w`` is what the inverter's CT alone asks for, ``ct_zero_grid_w``), and nothing
    after the goal shaped it but the limits the inverter applies itself: not the export limit, the
    reserve, the ceiling, nor the top-up below the floor."""
    return (
        goal_reason in ZERO_GRID_GOALS
        and goal_w == zero_grid_w == ct_zero_grid_w
        and (target.reason == goal_reason or target.reason in OWN_LIMITS)
        and not topping_up
    )


def dwell(target: Target, memory: Memory, now: datetime, dwell_s: float) -> Target:
    """5. No reversal of direction sooner than ``dwell_s`` after the last one: 0 W instead."""
    direction = _sign(target.w)
    if (
        direction != 0
        and memory.direction != 0
        and direction != memory.direction
        and memory.direction_since is not None
        and (now - memory.direction_since).total_seconds() < dwell_s
    ):
        return Target(0.0, "dwell")
    return target


def ramp(target: Target, memory: Memory, now: datetime, w_per_s: float) -> Target:
    """6. The magnitude grows at most ``w_per_s`` per second; shrinking (toward safety) is immediate."""
    if memory.at is None:
        return target
    step = w_per_s * max(0.0, (now - memory.at).total_seconds())
    last = memory.setpoint_w if (memory.setpoint_w > 0) == (target.w > 0) else 0.0
    if abs(target.w) > abs(last) + step:
        return Target(math.copysign(abs(last) + step, target.w), "ramp")
    return target


def quantise(target: Target, quantum_w: float) -> Target:
    """7. Toward zero, so a quantised setpoint never exceeds the limit it was clamped to."""
    return Target(_quantise(target.w, quantum_w), target.reason)


def deadband_width(deadband_w: float, grid_uncertainty_w: float | None) -> float:
    """Below the grid meter's accurate range a change within the reading's uncertainty is noise:
    the deadband widens to it, so the controller does not chase the reading."""
    return max(deadband_w, grid_uncertainty_w or 0.0)


def hold_range(
    lim: Limits, topping_up: bool, top_up_w: float, goal_reason: str, goal_w: float, slack_w: float = 0.0
) -> tuple[float, float]:
    """The setpoints the deadband may keep: within the limits (at least the top-up charge while
    topping up), and in the zero-grid goals never one that works against the house by more than
    ``slack_w``, i.e. a discharge above what the house draws (battery energy to the grid) or a
    charge above the surplus (grid energy into the battery). Holding the other side only leaves
    the battery doing a little less than it could; the energy stays in it."""
    lo, hi = -lim.charge_max_w, (-min(top_up_w, lim.charge_max_w) if topping_up else lim.discharge_max_w)
    if goal_reason in ZERO_GRID_GOALS and not topping_up:
        lo, hi = max(lo, min(goal_w, 0.0) - slack_w), min(hi, max(goal_w, 0.0) + slack_w)
    return lo, hi


def deadband(target: Target, memory: Memory, width_w: float, keep_lo_w: float, keep_hi_w: float) -> Target:
    """8. Keep the last setpoint when the change is under ``width_w``, the last is still within
    ``[keep_lo_w, keep_hi_w]`` and it points the way the battery last moved."""
    last = memory.setpoint_w
    if (
        memory.commanding
        and abs(target.w - last) < width_w
        and keep_lo_w <= last <= keep_hi_w
        and (last == 0 or _sign(last) == memory.direction)
    ):
        return target if target.w == last else Target(last, "deadband")
    return target


def battery_seen(snap: Snapshot, memory: Memory) -> float:
    """0. The battery power the grid meter's reading goes with (discharge ``+``).

    The grid meter is read more often than the inverter, so after a new setpoint the meter already
    sees the battery at it while the inverter's last reading still shows the old power. Adding that
    stale reading to the fresh grid reading would put the zero-grid target off by the whole change
    (a 1.9 kW charge read as still discharging 150 W sent the next self-use target to -1.8 kW).
    So while the inverter's reading predates the last change and the meter's was taken once the
    inverter had ``INVERTER_SETTLE_S`` to act on it, the battery is taken to be at the setpoint it
    was told. A meter reading inside that moment may or may not see the change (the command is
    still on its way, the inverter still ramping): the reading stands, as before.
    """
    changed = memory.changed_at
    if not memory.commanding or changed is None or snap.inverter_at is None or snap.meter_at is None:
        return snap.battery_w
    settled = changed + timedelta(seconds=INVERTER_SETTLE_S)
    if snap.inverter_at < settled <= snap.meter_at:
        return memory.setpoint_w
    return snap.battery_w


def diverter_guard_params(
    loads: tuple[DiverterLoad | HeatPumpLoad | EvLoad, ...], inverter_self_use: bool = False
) -> GuardParams | None:
    """The guard's settings when a diverter with no CT of its own may not be fed by the battery
    (``meter: null``, ``battery_may_feed: false``, ``detect_without_ct: true``); None: no guard.
    ``inverter_self_use``: the inverter's own self-use is handed back between commands."""
    for load in loads:
        if isinstance(load, DiverterLoad) and load.meter is None and not load.battery_may_feed:
            if load.detect_without_ct:
                return GuardParams(band_w=load.grid_band_w, probe_w=load.probe_w, drops_show=inverter_self_use)
    return None


# -- helpers -------------------------------------------------------------------------------------


def _sign(w: float) -> int:
    return 0 if w == 0 else (1 if w > 0 else -1)


def _quantise(value: float, quantum: float) -> float:
    return math.trunc(value / quantum) * quantum if quantum > 0 else value


def _command(battery_w: float) -> CommandMode:
    if battery_w > 0:
        return CommandMode.DISCHARGE
    if battery_w < 0:
        return CommandMode.CHARGE
    return CommandMode.STANDBY


def _stale(snap: Snapshot, memory: Memory, why: str) -> tuple[Decision, Memory]:
    decision = Decision(
        mode=snap.mode.mode.value,
        battery_w=0.0,
        command=None,
        intent=Intent.OFF,
        reason="stale_inputs",
        detail=why,
        commanding=False,
    )
    return decision, replace(memory, commanding=False, at=snap.now, setpoint_w=0.0)


def _off(snap: Snapshot, memory: Memory, params: ControlParams) -> tuple[Decision, Memory]:
    """Mode ``off``: the inverter runs on its own, except that the mains top-up below the floor is
    always on."""
    b = params.battery
    if not soc_limits.topping_up(b, snap.soc_pct, memory.topping_up, params.top_up_margin_pct):
        decision = Decision(
            mode=DispatcherModeName.OFF.value,
            battery_w=0.0,
            command=None,
            intent=Intent.OFF,
            reason="mode_off",
            commanding=False,
        )
        return decision, replace(
            memory,
            commanding=False,
            at=snap.now,
            setpoint_w=0.0,
            topping_up=False,
            request_seen=snap.mode.requested_at,
        )
    charge_max = b.max_charge_w
    if snap.charge_limit_w is not None:
        charge_max = min(charge_max, max(0.0, snap.charge_limit_w))
    power = _quantise(min(params.top_up_power_w, charge_max), params.quantum_w)
    decision = Decision(
        mode=DispatcherModeName.OFF.value,
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
        memory,
        commanding=True,
        at=snap.now,
        setpoint_w=-power + 0.0,
        topping_up=True,
        direction=charging,
        direction_since=memory.direction_since if memory.direction == charging else snap.now,
        request_seen=snap.mode.requested_at,
    )


def _handed_back(
    snap: Snapshot,
    memory: Memory,
    params: ControlParams,
    target: Target,
    intent: Intent,
    numbers: dict[str, float],
    loads: LoadsOutcome,
    topping_up: bool,
    finished: bool,
    watch: GuardOutcome | None,
) -> tuple[Decision, Memory]:
    """The inverter runs its own self-use. The decision still says what it is expected to do (zero
    the grid: ``battery_w``); memory takes the battery as it moves, so the ramp and the dwell start
    from what it really does when a setpoint is needed again."""
    numbers["setpoint_w"] = target.w
    decision = Decision(
        mode=snap.mode.mode.value if not finished else DispatcherModeName.AUTO.value,
        battery_w=target.w + 0.0,
        command=None,
        intent=intent,
        reason=target.reason,
        detail="inverter's own self-use: it zeroes the grid by its CT, no setpoint needed",
        numbers=numbers,
        loads_on=dict(loads.on),
        load_reasons=dict(loads.reasons),
        commanding=False,
        mode_finished=finished,
        event=watch.event if watch is not None else None,
    )
    moving = snap.battery_w if abs(snap.battery_w) >= params.quantum_w else 0.0
    direction = _sign(moving)
    turned = direction != 0 and direction != memory.direction
    return decision, Memory(
        setpoint_w=_quantise(moving, params.quantum_w) + 0.0,
        at=snap.now,
        direction=direction if turned else memory.direction,
        direction_since=snap.now if turned else memory.direction_since,
        topping_up=topping_up,
        commanding=False,
        loads_on=tuple(sorted(loads.on.items())),
        budgets=loads.budgets,
        request_seen=snap.mode.requested_at,
        diverter=watch.memory if watch is not None else memory.diverter,
    )


def control(snap: Snapshot, plan: Schedule | None, memory: Memory, params: ControlParams) -> tuple[Decision, Memory]:
    """One decision: the failsafe and mode ``off`` first, then the eight steps of the module docstring."""
    b = params.battery
    stale = stale_inputs(snap, params.stale_after_s)
    if stale is not None:
        return _stale(snap, memory, stale)
    finished = mode_finished(snap, b)
    mode = DispatcherModeName.AUTO if finished else snap.mode.mode
    if mode is DispatcherModeName.OFF:
        return _off(snap, memory, params)

    read_w = snap.battery_w
    seen_w = battery_seen(snap, memory)  # 0
    if seen_w is not read_w:  # the reading itself: the snapshot as it is (a backtest makes ~500,000 a year)
        snap = replace(snap, battery_w=seen_w)
    # The band's edges with their hysteresis, decided once: the arbiter shares the surplus and
    # feeds the heat pumps by them, ``limits`` clamps the setpoint by them.
    band = soc_limits.band_stops(b, snap.soc_pct, memory.band_stopped)
    loads: LoadsOutcome = arbitrate(snap, memory, params, battery_free=battery_free(mode, snap, plan), band=band)
    # What the battery must do to bring the grid to zero, leaving out the flexible loads it may
    # not feed: with the immersion excluded, the battery never chases a diverter.
    ct_zero_grid = snap.battery_w + snap.grid_w
    zero_grid = ct_zero_grid - loads.not_from_battery_w
    if zero_grid < 0 and params.loads:
        # Charge only from the surplus left after loads ranked above the battery.
        zero_grid = max(zero_grid, -loads.battery_share_w)

    goal_w, intent, reason, numbers = goal(mode, snap, plan, zero_grid, b)  # 1
    numbers.update(
        goal_w=goal_w,
        soc_pct=snap.soc_pct,
        grid_w=snap.grid_w,
        battery_w=snap.battery_w,
        not_from_battery_w=loads.not_from_battery_w,
    )
    if snap.battery_w != read_w:
        numbers["battery_read_w"] = read_w
    target = Target(goal_w, reason)
    # Within 1: a diverter with no CT that the battery feeds caps the discharge (core.diverter_guard).
    watch: GuardOutcome | None = None
    guard_params = diverter_guard_params(params.loads, params.inverter_self_use)
    if guard_params is not None:
        zero_goal = reason in ZERO_GRID_GOALS
        # The battery reading's time: the inverter's, or now when battery_seen took the setpoint.
        read_at = snap.inverter_at if snap.battery_w == read_w else snap.now
        watch = guard(
            snap.now, snap.battery_w, snap.grid_w, snap.pv_w, zero_goal, memory.diverter, guard_params, read_at
        )
        if watch.cap_w is not None:
            numbers["diverter_cap_w"] = watch.cap_w
            if watch.memory.diverted_w:
                numbers["diverter_seen_w"] = watch.memory.diverted_w
            if goal_w > watch.cap_w:
                target = Target(watch.cap_w, "diverter_cap")
    target = export_limit(target, snap, params.export_limit_w)  # 2
    lim = limits(snap, b, band)  # 3
    numbers.update(charge_max_w=lim.charge_max_w, discharge_max_w=lim.discharge_max_w)
    target = lim.clamp(target)
    topping_up = soc_limits.topping_up(b, snap.soc_pct, memory.topping_up, params.top_up_margin_pct)
    target = top_up(target, topping_up, params.top_up_power_w, lim)  # 4
    if target.reason == "top_up_floor":
        intent = Intent.CHARGE
    if params.inverter_self_use and hand_back(target, goal_w, reason, zero_grid, ct_zero_grid, topping_up):
        handed = _handed_back(snap, memory, params, target, intent, numbers, loads, topping_up, finished, watch)
        return handed[0], replace(handed[1], band_stopped=band)
    # Dwell, ramp and deadband keep automatic decisions from flip-flopping; a person's request is
    # not theirs to shape. A new request (any mode) goes out as asked at once; a standing forced
    # mode (a fixed setpoint) is never delayed or slowed. Safety moves (the top-up, holding the
    # export limit) are neither delayed nor slowed either.
    request = None if finished else snap.mode.requested_at
    fresh = request is not None and request != memory.request_seen
    if not (fresh or mode in FIXED_SETPOINT or target.reason in ("top_up_floor", "export_limit")):
        target = dwell(target, memory, snap.now, params.dwell_s)  # 5
        target = ramp(target, memory, snap.now, params.ramp_w_per_s)  # 6
    target = quantise(target, params.quantum_w)  # 7
    if not fresh:
        width = deadband_width(params.deadband_w, snap.grid_uncertainty_w)
        if width != params.deadband_w:
            numbers["deadband_w"] = width
        slack = params.quantum_w / 2  # within half a write step of the need is as close as it gets
        held_goal = min(goal_w, watch.cap_w) if watch is not None and watch.cap_w is not None else goal_w
        keep_lo, keep_hi = hold_range(lim, topping_up, params.top_up_power_w, reason, held_goal, slack)
        target = deadband(target, memory, width, keep_lo, keep_hi)  # 8

    setpoint = lim.bound(target.w) + 0.0  # + 0.0: no -0.0 on the wire
    numbers["setpoint_w"] = setpoint
    decision = Decision(
        mode=mode.value,
        battery_w=setpoint,
        command=_command(setpoint),
        intent=intent,
        reason=target.reason,
        numbers=numbers,
        loads_on=dict(loads.on),
        load_reasons=dict(loads.reasons),
        commanding=True,
        mode_finished=finished,
        detail=watch.detail if watch is not None and watch.cap_w is not None else None,
        event=watch.event if watch is not None else None,
    )
    direction = _sign(setpoint)
    turned = direction != 0 and direction != memory.direction
    new_memory = Memory(
        setpoint_w=setpoint,
        at=snap.now,
        direction=direction if turned else memory.direction,
        direction_since=snap.now if turned else memory.direction_since,
        topping_up=topping_up,
        commanding=True,
        loads_on=tuple(sorted(loads.on.items())),
        budgets=loads.budgets,
        request_seen=snap.mode.requested_at,
        changed_at=snap.now if setpoint != memory.setpoint_w or not memory.commanding else memory.changed_at,
        diverter=watch.memory if watch is not None else memory.diverter,
        band_stopped=band,
    )
    return decision, new_memory
