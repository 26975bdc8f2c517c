"""Each of the controller's eight steps on its own: a step table per step, and the SoC band's owner.

Rows are (inputs..., expected output); the whole-controller tables are in test_controller.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from services.dispatcher.core.controller import (
    ControlParams,
    Limits,
    Memory,
    Target,
    battery_seen,
    control,
    deadband,
    deadband_width,
    dwell,
    export_limit,
    goal,
    hold_range,
    limits,
    quantise,
    ramp,
    top_up,
)
from services.dispatcher.core.planner import Schedule
from services.dispatcher.core.snapshot import ModeState, Snapshot
from shared.energy import soc_limits
from shared.energy.battery import BatteryModel
from shared.messages import DispatcherModeName as M
from shared.messages import Intent

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
B = BatteryModel(
    capacity_wh=10400, max_charge_w=3000, max_discharge_w=2500, floor_pct=10, reserve_pct=20, ceiling_pct=97
)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def snap(*, soc: float = 50, battery: float = 0, grid: float = 0, mode: ModeState | None = None, **kw) -> Snapshot:
    return Snapshot(now=T0, soc_pct=soc, battery_w=battery, grid_w=grid, mode=mode or ModeState(), **kw)


PLAN = Schedule(
    start=T0,
    step_s=1800,
    soc_pct_start=50,
    battery_w=np.array([-2500.0, 800.0, 0.0, 600.0, 700.0, -500.0, -400.0]),
    grid_w=np.array([2900.0, 0.0, 500.0, 200.0, -100.0, -300.0, 100.0]),
    soc_pct_end=np.array([60.0, 56, 56, 54, 52, 54, 55]),
    intents=(
        Intent.CHARGE,
        Intent.SELF_USE,
        Intent.HOLD,
        Intent.SELF_USE,
        Intent.SELF_USE,
        Intent.SELF_USE,
        Intent.SELF_USE,
    ),
    import_price=np.zeros(7),
    export_price=np.zeros(7),
    pv_w=np.zeros(7),
    load_w=np.full(7, 400.0),
    cost=0.0,
    objective=0.0,
    solver="lp",
)


@pytest.mark.parametrize(
    ("mode", "power", "plan_step", "zero_grid", "expected"),
    [
        (M.SELF_USE, None, None, 700, (700, Intent.SELF_USE, "self_use")),
        (M.HOLD, None, None, 700, (0, Intent.HOLD, "hold")),
        (M.FORCE_CHARGE, None, None, 700, (-3000, Intent.CHARGE, "force_charge")),
        (M.FORCE_CHARGE, 1200, None, 700, (-1200, Intent.CHARGE, "force_charge")),
        (M.FORCE_DISCHARGE, None, None, -700, (2500, Intent.DISCHARGE, "force_discharge")),
        (M.AUTO, None, None, 700, (700, Intent.SELF_USE, "no_plan")),  # no plan: zero the grid
        (M.AUTO, None, 0, 700, (-2500, Intent.CHARGE, "plan_track")),
        (M.AUTO, None, 1, 700, (700, Intent.SELF_USE, "plan_self_use")),
        (M.AUTO, None, 2, 700, (0, Intent.HOLD, "plan_hold")),
        # the plan rations: discharging 600 W while still importing caps the battery at 600 W
        (M.AUTO, None, 3, 900, (600, Intent.SELF_USE, "plan_self_use")),
        (M.AUTO, None, 3, 400, (400, Intent.SELF_USE, "plan_self_use")),
        # charging 500 W while still exporting: at most 500 W of charge
        (M.AUTO, None, 5, -900, (-500, Intent.SELF_USE, "plan_self_use")),
        # discharging into an export, or charging while importing: zero the grid
        (M.AUTO, None, 4, -200, (-200, Intent.SELF_USE, "plan_self_use")),
        (M.AUTO, None, 6, 300, (300, Intent.SELF_USE, "plan_self_use")),
        (M.AUTO, None, 9, 300, (300, Intent.SELF_USE, "no_plan")),  # past the plan's horizon
    ],
)
def test_goal(mode, power, plan_step, zero_grid, expected) -> None:
    s = snap(mode=ModeState(mode, power_w=power))
    if plan_step is not None:
        s = Snapshot(now=at(1800 * plan_step + 1), soc_pct=50, battery_w=0, grid_w=0, mode=s.mode)
    w, intent, reason, numbers = goal(mode, s, PLAN if plan_step is not None else None, zero_grid, B)
    assert (w, intent, reason) == expected
    assert numbers["zero_grid_w"] == zero_grid


@pytest.mark.parametrize(
    ("target", "battery", "grid", "limit", "expected"),
    [
        (Target(500, "self_use"), 0, 0, None, Target(500, "self_use")),  # no limit
        # exporting 3 kW of PV, limit 2 kW: the battery must take at least 1 kW
        (Target(0, "plan_hold"), 0, -3000, 2000, Target(-1000, "export_limit")),
        (Target(-1500, "plan_track"), 0, -3000, 2000, Target(-1500, "plan_track")),  # already enough
        # discharging 1 kW into a 500 W export with limit 0: discharge at most 500 W
        (Target(1000, "self_use"), 1000, -500, 0, Target(500, "export_limit")),
    ],
)
def test_export_limit(target, battery, grid, limit, expected) -> None:
    assert export_limit(target, snap(battery=battery, grid=grid), limit) == expected


@pytest.mark.parametrize(
    ("soc", "charge_limit", "discharge_limit", "expected"),
    [
        (50, None, None, Limits(3000, 2500, "device_limit", "device_limit")),
        (50, 1000, 4000, Limits(1000, 2500, "bms_limit", "device_limit")),
        (50, -5, 800, Limits(0, 800, "bms_limit", "bms_limit")),  # a negative BMS limit is 0
        (97, None, None, Limits(0, 2500, "soc_ceiling", "device_limit")),
        (20, 1000, 800, Limits(1000, 0, "bms_limit", "reserve_floor")),
        (20.1, None, None, Limits(3000, 2500, "device_limit", "device_limit")),
    ],
)
def test_limits(soc, charge_limit, discharge_limit, expected) -> None:
    assert limits(snap(soc=soc, charge_limit_w=charge_limit, discharge_limit_w=discharge_limit), B) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (Target(3000, "force_discharge"), Target(800, "bms_limit")),
        (Target(-3000, "force_charge"), Target(0, "soc_ceiling")),
        (Target(500, "self_use"), Target(500, "self_use")),
    ],
)
def test_limits_clamp(target, expected) -> None:
    assert Limits(0, 800, "soc_ceiling", "bms_limit").clamp(target) == expected


@pytest.mark.parametrize(
    ("target", "active", "charge_max", "expected"),
    [
        (Target(500, "self_use"), False, 3000, Target(500, "self_use")),
        (Target(500, "self_use"), True, 3000, Target(-1000, "top_up_floor")),
        (Target(-2000, "plan_track"), True, 3000, Target(-2000, "plan_track")),  # charging more already
        (Target(0, "reserve_floor"), True, 400, Target(-400, "top_up_floor")),  # within the BMS limit
    ],
)
def test_top_up(target, active, charge_max, expected) -> None:
    assert top_up(target, active, 1000, Limits(charge_max, 0)) == expected


@pytest.mark.parametrize(
    ("target", "direction", "since_s", "now_s", "expected"),
    [
        (Target(-1500, "self_use"), 1, 0, 30, Target(0, "dwell")),  # reversal 30 s after the last
        (Target(-1500, "self_use"), 1, 0, 300, Target(-1500, "self_use")),  # dwell_s has passed
        (Target(800, "self_use"), 1, 0, 30, Target(800, "self_use")),  # same direction
        (Target(0, "plan_hold"), 1, 0, 30, Target(0, "plan_hold")),  # stopping is not a reversal
        (Target(-1500, "self_use"), 0, None, 30, Target(-1500, "self_use")),  # never moved
    ],
)
def test_dwell(target, direction, since_s, now_s, expected) -> None:
    memory = Memory(direction=direction, direction_since=None if since_s is None else at(since_s))
    assert dwell(target, memory, at(now_s), 300) == expected


@pytest.mark.parametrize(
    ("target", "last", "dt", "expected"),
    [
        (Target(3000, "force_discharge"), 0, 2, Target(400, "ramp")),  # 200 W/s for 2 s
        (Target(3000, "force_discharge"), 1000, 2, Target(1400, "ramp")),
        (Target(300, "self_use"), 1000, 2, Target(300, "self_use")),  # shrinking is immediate
        (Target(-3000, "plan_track"), 1000, 2, Target(-400, "ramp")),  # a reversal starts from 0
        (Target(-3000, "plan_track"), -2900, 2, Target(-3000, "plan_track")),
        (Target(3000, "force_discharge"), None, 2, Target(3000, "force_discharge")),  # first call
    ],
)
def test_ramp(target, last, dt, expected) -> None:
    memory = Memory() if last is None else Memory(setpoint_w=last, at=T0)
    assert ramp(target, memory, at(dt), 200) == expected


@pytest.mark.parametrize(
    ("w", "expected"),
    [(1234, 1200), (-1234, -1200), (49.9, 0), (-50, -50), (2999.9, 2950)],
)
def test_quantise_toward_zero(w, expected) -> None:
    assert quantise(Target(w, "self_use"), 50) == Target(expected, "self_use")


ON_1200 = Memory(setpoint_w=1200, direction=1, commanding=True)


@pytest.mark.parametrize(
    ("target", "memory", "hi", "expected"),
    [
        # a change under 100 W keeps the last setpoint
        (Target(1250, "self_use"), ON_1200, 2500, Target(1200, "deadband")),
        (Target(1200, "self_use"), ON_1200, 2500, Target(1200, "self_use")),
        (Target(1350, "self_use"), ON_1200, 2500, Target(1350, "self_use")),
        # not while the last is no longer allowed (a limit came down below it)
        (Target(1000, "bms_limit"), replace(ON_1200, setpoint_w=1050), 1000, Target(1000, "bms_limit")),
        # not when nothing was commanded before (after a hand-back)
        (Target(50, "self_use"), Memory(setpoint_w=0, direction=1, commanding=False), 2500, Target(50, "self_use")),
        # not when the last points against the way the battery last moved
        (Target(-50, "self_use"), Memory(setpoint_w=-40, direction=1, commanding=True), 2500, Target(-50, "self_use")),
    ],
)
def test_deadband(target, memory, hi, expected) -> None:
    assert deadband(target, memory, 100, -3000, hi) == expected


# -- the SoC band's one owner -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("soc", "may_discharge", "may_charge"),
    [(19.9, False, True), (20, False, True), (20.1, True, True), (96.9, True, True), (97, True, False)],
)
def test_soc_band(soc, may_discharge, may_charge) -> None:
    assert soc_limits.may_discharge(B, soc) is may_discharge
    assert soc_limits.may_charge(B, soc) is may_charge


@pytest.mark.parametrize(
    ("soc", "was", "expected"),
    [(9.9, False, True), (12, False, False), (12, True, True), (15, True, False), (10, True, True)],
)
def test_top_up_hysteresis(soc, was, expected) -> None:
    assert soc_limits.topping_up(B, soc, was, margin_pct=5) is expected


def test_forced_modes_stop_within_the_band_and_plans_move_within_it() -> None:
    assert soc_limits.charge_stops_at_pct(B, None) == 97 and soc_limits.charge_stops_at_pct(B, 80) == 80
    assert soc_limits.discharge_stops_at_pct(B, None) == 20 and soc_limits.discharge_stops_at_pct(B, 5) == 20
    assert soc_limits.discharge_stops_at_pct(B, 40) == 40
    assert soc_limits.discharge_stops_at_pct(B, mode_off=True) == 10  # the inverter on its own: the floor
    assert soc_limits.plan_band_wh(B, 50) == pytest.approx((2080, 10088))
    # a battery already outside the band is not an infeasible plan
    assert soc_limits.plan_band_wh(B, 15) == pytest.approx((1560, 10088))
    assert soc_limits.plan_band_wh(B, 99) == pytest.approx((2080, 10296))


# -- a person's request is not shaped (issue 12 item 7) ------------------------------------------

# Commanded self-use (inverter_self_use=False): these tables are about how the steps shape it.
PARAMS = ControlParams(battery=B, deadband_w=100, dwell_s=300, ramp_w_per_s=200, quantum_w=50, inverter_self_use=False)


def person(mode: M, asked_s: float, **kw) -> ModeState:
    return ModeState(mode, requested_at=at(asked_s), **kw)


def run(rows: list[Snapshot], params: ControlParams = PARAMS) -> list[tuple[float, str]]:
    memory, out = Memory(), []
    for s in rows:
        decision, memory = control(s, None, memory, params)
        out.append((decision.battery_w, decision.reason))
    return out


def house(t: float, *, battery: float, grid: float, mode: ModeState, soc: float = 60, **kw) -> Snapshot:
    return Snapshot(
        now=at(t), soc_pct=soc, battery_w=battery, grid_w=grid, mode=mode, inverter_at=at(t), meter_at=at(t), **kw
    )


def test_force_charge_asked_while_auto_discharges_goes_out_at_the_next_cycle() -> None:
    """Auto discharging (no plan: zero the grid), then a person asks for force_charge 20 s later:
    no dwell (300 s), no ramp (200 W/s) - the full charge at the next cycle, and it stays."""
    auto = ModeState()
    charge = person(M.FORCE_CHARGE, 25)
    assert run(
        [
            house(0, battery=0, grid=1200, mode=auto),
            house(10, battery=1200, grid=0, mode=auto),
            house(27, battery=1200, grid=0, mode=charge),
            house(29, battery=-3000, grid=4200, mode=charge),
            house(31, battery=-2980, grid=4180, mode=charge),
        ]
    ) == [
        (1200, "no_plan"),
        (1200, "no_plan"),
        (-3000, "force_charge"),
        (-3000, "force_charge"),
        (-3000, "force_charge"),
    ]


def test_the_same_turn_made_by_the_dispatcher_itself_is_still_shaped() -> None:
    """The contrast: auto's own reversal 20 s after discharging waits out the dwell."""
    auto = ModeState()
    assert run(
        [
            house(0, battery=0, grid=1200, mode=auto),
            house(10, battery=1200, grid=0, mode=auto),
            house(27, battery=1200, grid=-3000, mode=auto),  # PV came out: auto would charge
        ]
    ) == [(1200, "no_plan"), (1200, "no_plan"), (0, "dwell")]
    # a mode the dispatcher set itself (a timed mode ran out: set_by "expired") is automatic
    expired = ModeState(M.SELF_USE)
    assert run(
        [house(0, battery=0, grid=1200, mode=auto), house(27, battery=1200, grid=-3000, mode=expired)]
    ) == [(1200, "no_plan"), (0, "dwell")]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (person(M.FORCE_DISCHARGE, 5), (2500, "force_discharge")),  # no ramp from 0 W
        (person(M.HOLD, 5), (0, "hold")),  # no deadband keeping 50 W
        (person(M.SELF_USE, 5), (-1400, "self_use")),  # no dwell against the last discharge
    ],
)
def test_each_request_goes_out_as_asked_at_the_next_cycle(mode, expected) -> None:
    rows = [
        house(0, battery=0, grid=50, mode=ModeState()),
        house(6, battery=50, grid=-1450, mode=mode),  # PV 1.5 kW surplus appeared
    ]
    assert run(rows)[1] == expected


def test_after_the_request_a_persons_self_use_is_automatic_again() -> None:
    asked = person(M.SELF_USE, 5)
    assert run(
        [
            house(0, battery=0, grid=800, mode=ModeState()),
            house(6, battery=800, grid=-1000, mode=asked),  # request: charge at once
            house(12, battery=-200, grid=600, mode=asked),  # then auto-shaped: no flip within dwell
        ]
    ) == [(800, "no_plan"), (-200, "self_use"), (0, "dwell")]


def test_a_request_that_arrives_while_inputs_are_stale_goes_out_when_they_are_fresh() -> None:
    asked = person(M.SELF_USE, 5)
    memory = Memory()
    _, memory = control(house(0, battery=0, grid=1000, mode=ModeState()), None, memory, PARAMS)
    stale = replace(house(10, battery=1000, grid=0, mode=asked), meter_at=at(-100))
    decision, memory = control(stale, None, memory, PARAMS)
    assert decision.reason == "stale_inputs"
    decision, memory = control(house(12, battery=0, grid=-1500, mode=asked), None, memory, PARAMS)
    assert (decision.battery_w, decision.reason) == (-1500, "self_use")


# -- below the meter's accurate range the deadband widens (issue 13 item 7) -----------------------


def test_deadband_width() -> None:
    assert deadband_width(100, None) == 100
    assert deadband_width(100, 57.5) == 100
    assert deadband_width(30, 57.5) == 57.5


def test_a_reading_below_the_accurate_range_is_not_chased() -> None:
    """Self-use on a near-zero grid, deadband 30 W. The SDM120 below 0.25 A: the reading's bound is
    57.5 W (0.25 A x 230 V, services/meter_bridge/accuracy.yaml). An uncertain import within it does
    not move the battery, the same reading in the accurate range does, a real change beyond it does.
    A reading of battery energy going to the grid is never held (``hold_range``), uncertain or not."""
    params = replace(PARAMS, deadband_w=30)
    uncertain = {"grid_uncertainty_w": 57.5}
    self_use = ModeState(M.SELF_USE)
    rows = [
        house(0, battery=0, grid=400, mode=self_use),
        house(10, battery=400, grid=50, mode=self_use, **uncertain),  # 450 W wanted: kept at 400
        house(20, battery=400, grid=-45, mode=self_use, **uncertain),  # exporting: down to 350
        house(30, battery=350, grid=50, mode=self_use),  # the same import, accurate: 400
        house(40, battery=400, grid=300, mode=self_use),  # a kettle: 700
    ]
    assert run(rows, params) == [
        (400, "self_use"),
        (400, "deadband"),
        (350, "self_use"),
        (400, "self_use"),
        (700, "self_use"),
    ]
    memory = Memory(setpoint_w=400, at=at(0), direction=1, direction_since=at(0), commanding=True)
    decision, _ = control(house(10, battery=400, grid=50, mode=self_use, **uncertain), None, memory, params)
    assert decision.numbers["deadband_w"] == 57.5


def test_snapshot_takes_the_uncertainty_only_below_the_accurate_range() -> None:
    from shared.examples import EXAMPLES
    from shared.messages import InverterState, MeterRole, MeterState

    inverter = EXAMPLES[InverterState]
    assert isinstance(inverter, InverterState)
    meter: dict[str, Any] = dict(
        device="grid",
        model="eastron_sdm120",
        role=MeterRole.GRID,
        voltage_v=230,
        current_a=0.1,
        frequency_hz=50,
        import_energy_wh=0,
        export_energy_wh=0,
        ts=T0,
    )
    low = MeterState(power_w=-23, below_accurate_range=True, uncertainty_w=57.5, **meter)
    fine = MeterState(power_w=-2300, below_accurate_range=False, uncertainty_w=23, **meter)
    assert Snapshot.from_messages(T0, inverter, grid_meter=low).grid_uncertainty_w == 57.5
    assert Snapshot.from_messages(T0, inverter, grid_meter=fine).grid_uncertainty_w is None


# -- the battery the grid reading goes with, and what the deadband may hold (issue 12 item 8) -----


@pytest.mark.parametrize(
    ("commanding", "changed_s", "inverter_s", "meter_s", "expected"),
    [
        (True, 10, 0, 22, 3000),  # inverter read before the change, meter once it settled: the setpoint
        (True, 10, 15, 22, 3000),  # inverter read while it was still moving: the setpoint
        (True, 10, 21, 22, 150),  # inverter read after it settled: its reading
        (True, 10, 0, 12, 150),  # meter read 2 s after the change: it may not show it yet
        (True, 10, 0, 8, 150),  # both read before the change: the reading goes with the grid
        (False, 10, 0, 12, 150),  # not commanding (handed back): the inverter runs itself
        (True, None, 0, 12, 150),
    ],
)
def test_battery_seen(commanding, changed_s, inverter_s, meter_s, expected) -> None:
    memory = Memory(setpoint_w=3000, commanding=commanding, changed_at=None if changed_s is None else at(changed_s))
    s = replace(snap(battery=150), inverter_at=at(inverter_s), meter_at=at(meter_s))
    assert battery_seen(s, memory) == expected


@pytest.mark.parametrize(
    ("reason", "goal_w", "topping_up", "expected"),
    [
        ("plan_self_use", 150, False, (0, 150)),  # no discharge above the house's draw
        ("self_use", -190, False, (-190, 0)),  # no charge above the surplus
        ("no_plan", 0, False, (0, 0)),
        ("plan_track", 2000, False, (-3000, 2500)),  # a planned power: the limits only
        ("self_use", 150, True, (-3000, -1000)),  # topping up: at least the top-up charge
    ],
)
def test_hold_range(reason, goal_w, topping_up, expected) -> None:
    assert hold_range(Limits(3000, 2500), topping_up, 1000, reason, goal_w) == expected
    # with slack: within 25 W of working against the house may still be held
    lo, hi = expected
    slack = hold_range(Limits(3000, 2500), topping_up, 1000, reason, goal_w, 25.0)
    if reason in ("plan_self_use", "self_use", "no_plan") and not topping_up:
        assert slack == (max(-3000, lo - 25), min(2500, hi + 25))
    else:
        assert slack == expected


def test_the_demos_3_kw_load_story() -> None:
    """13:28 in the demo: a 3 kW load, the battery told 3 kW. Two minutes on the meter reads 104 W of
    import while the inverter's last reading (from before the command) still says 150 W: that is
    the battery at 3 kW, not at 150 W, so it stays at 3 kW; and when the load ends (-2.8 kW on the
    meter) it comes down at once instead of going on exporting."""
    def reading(t: float, battery: float, grid: float, inverter_t: float) -> Snapshot:
        mode = ModeState(M.SELF_USE)
        return Snapshot(at(t), 52, battery, grid, mode=mode, inverter_at=at(inverter_t), meter_at=at(t))

    rows = [reading(0, 150, 2978, -70), reading(120, 150, 104, -70), reading(240, 3000, -2850, 230)]
    params = replace(PARAMS, ramp_w_per_s=1000, stale_after_s=600)
    memory, out = Memory(), []
    for s in rows:
        decision, memory = control(s, None, memory, params)
        out.append((decision.battery_w, decision.reason))
    assert out == [(2500, "device_limit"), (2500, "device_limit"), (150, "self_use")]
