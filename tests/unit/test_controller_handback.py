"""The hand-back step: where nothing needs a setpoint the inverter runs its own self-use.

A step table for ``hand_back`` on its own, then the whole controller: what is handed back, what
takes control back (reserve, ceiling, export limit, a diverter, a plan's power or rationing, the
top-up, a person's fixed power), and a property over noisy loads that a hand-back never happens
while one of those binds.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher.core.controller import ControlParams, Memory, Target, control, hand_back
from services.dispatcher.core.planner import Schedule
from services.dispatcher.core.snapshot import LoadReading, ModeState, Snapshot
from shared.config.loads import DiverterLoad
from shared.energy.battery import BatteryModel
from shared.messages import CommandMode, Intent
from shared.messages import DispatcherModeName as M

T0 = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
B = BatteryModel(
    capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000, floor_pct=10, reserve_pct=20, ceiling_pct=97
)
PARAMS = ControlParams(battery=B, deadband_w=100, dwell_s=300, ramp_w_per_s=200, quantum_w=50)
SELF = ModeState(M.SELF_USE)


def snap(t: float = 0, *, soc: float = 50, battery: float = 0, grid: float = 0, mode: ModeState | None = None,
         **kw: Any) -> Snapshot:  # fmt: skip
    now = T0 + timedelta(seconds=t)
    return Snapshot(
        now=now, soc_pct=soc, battery_w=battery, grid_w=grid, mode=mode or ModeState(), inverter_at=now, meter_at=now,
        **kw,
    )  # fmt: skip


def plan(battery_w: list[float], grid_w: list[float], intents: list[Intent]) -> Schedule:
    n = len(battery_w)
    return Schedule(
        start=T0, step_s=1800, soc_pct_start=50, battery_w=np.array(battery_w), grid_w=np.array(grid_w),
        soc_pct_end=np.full(n, 50.0), intents=tuple(intents), import_price=np.zeros(n), export_price=np.zeros(n),
        pv_w=np.zeros(n), load_w=np.full(n, 400.0), cost=0.0, objective=0.0, solver="lp",
    )  # fmt: skip


# -- the step on its own -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "goal_w", "goal_reason", "zero_grid", "ct_zero_grid", "topping_up", "expected"),
    [
        (Target(700, "self_use"), 700, "self_use", 700, 700, False, True),
        (Target(-1200, "plan_self_use"), -1200, "plan_self_use", -1200, -1200, False, True),
        (Target(300, "no_plan"), 300, "no_plan", 300, 300, False, True),
        # limits the inverter applies itself: its rating, its BMS
        (Target(3000, "device_limit"), 3400, "self_use", 3400, 3400, False, True),
        (Target(800, "bms_limit"), 1500, "self_use", 1500, 1500, False, True),
        # protections the inverter knows nothing of
        (Target(0, "reserve_floor"), 900, "self_use", 900, 900, False, False),
        (Target(0, "soc_ceiling"), -900, "self_use", -900, -900, False, False),
        (Target(-400, "export_limit"), 200, "self_use", 200, 200, False, False),
        (Target(-1000, "top_up_floor"), 500, "self_use", 500, 500, True, False),
        (Target(-1500, "self_use"), -1500, "self_use", -1500, -1500, True, False),  # surplus while topping up
        # a diverter kept off the battery's target: the inverter's CT would feed it
        (Target(-500, "self_use"), -500, "self_use", -500, 1000, False, False),
        # the plan rations (capped below zero grid), tracks a power, or holds
        (Target(600, "plan_self_use"), 600, "plan_self_use", 900, 900, False, False),
        (Target(-2500, "plan_track"), -2500, "plan_track", 400, 400, False, False),
        (Target(0, "plan_hold"), 0, "plan_hold", 400, 400, False, False),
        # a person's fixed power
        (Target(0, "hold"), 0, "hold", 400, 400, False, False),
        (Target(2000, "force_discharge"), 2000, "force_discharge", 400, 400, False, False),
    ],
)
def test_hand_back(target, goal_w, goal_reason, zero_grid, ct_zero_grid, topping_up, expected) -> None:
    assert hand_back(target, goal_w, goal_reason, zero_grid, ct_zero_grid, topping_up) is expected


# -- the whole controller ------------------------------------------------------------------------


def run(rows: list[Snapshot], params: ControlParams = PARAMS, schedule: Schedule | None = None):
    memory, out = Memory(), []
    for s in rows:
        decision, memory = control(s, schedule, memory, params)
        out.append((decision.command.value if decision.command else None, decision.battery_w, decision.reason))
    return out


def test_self_use_is_handed_back_and_protections_take_control_back() -> None:
    rows = [
        snap(0, soc=50, battery=0, grid=1234, mode=SELF),  # importing: the inverter covers it itself
        snap(10, soc=50, battery=1234, grid=-30, mode=SELF),
        snap(20, soc=20, battery=600, grid=0, mode=SELF),  # at the reserve: standby, commanded
        snap(30, soc=20, battery=0, grid=600, mode=SELF),
        snap(40, soc=20.5, battery=0, grid=-800, mode=SELF),  # PV surplus: charging is the inverter's own
        snap(50, soc=97, battery=-800, grid=-100, mode=SELF),  # at the ceiling: standby, commanded
    ]
    assert run(rows) == [
        (None, 1234, "self_use"),
        (None, 1204, "self_use"),
        ("standby", 0, "reserve_floor"),
        ("standby", 0, "reserve_floor"),
        (None, -800, "self_use"),
        ("standby", 0, "soc_ceiling"),
    ]


def test_export_limit_and_plan_need_setpoints() -> None:
    # Zeroing the grid never exports, so the export limit cannot bind on a self-use goal; it does
    # on a plan step that rations charging (at most 500 W while 2 kW would be exported).
    limited = ControlParams(battery=B, ramp_w_per_s=1000, dwell_s=0, export_limit_w=1000)
    rationed = plan([-500.0], [-1500.0], [Intent.SELF_USE])
    assert run([snap(0, battery=0, grid=-2000)], limited, rationed) == [("charge", -1000, "export_limit")]
    schedule = plan(
        [-2500.0, 0.0, 600.0, 0.0], [2900.0, 500.0, 200.0, 0.0],
        [Intent.CHARGE, Intent.HOLD, Intent.SELF_USE, Intent.SELF_USE],
    )  # fmt: skip
    rows = [
        snap(0, battery=0, grid=400),  # plan charges from the grid
        snap(1800, battery=-2500, grid=2900),  # plan holds
        snap(3600, battery=0, grid=900),  # plan rations at 600 W while importing: commanded
        snap(3610, battery=600, grid=-200),  # the house needs only 400 W: the inverter's own
        snap(5400, battery=0, grid=300),  # plain self-use step
    ]
    out = run(rows, ControlParams(battery=B, ramp_w_per_s=1000, dwell_s=0), schedule)
    assert out == [
        ("charge", -2500, "plan_track"),
        ("standby", 0, "plan_hold"),
        ("discharge", 600, "plan_self_use"),
        (None, 400, "plan_self_use"),
        (None, 300, "plan_self_use"),
    ]


def test_a_diverter_running_keeps_the_setpoint() -> None:
    diverter = DiverterLoad(kind="diverter", id="immersion", meter="imm", rated_power_w=3000, priority=20)
    params = ControlParams(battery=B, ramp_w_per_s=1000, loads=(diverter,))
    # The immersion soaks up 1.3 kW of surplus: the battery, ranked first, takes it by a setpoint
    # (the inverter's CT sees only the 200 W import, and its self-use would discharge into the water).
    on = snap(0, battery=0, grid=200, mode=SELF, loads=(LoadReading("immersion", 1500),))
    decision, _ = control(on, None, Memory(), params)
    assert decision.commanding and (decision.command, decision.battery_w) == (CommandMode.CHARGE, -1300)
    off = snap(0, battery=0, grid=200, mode=SELF, loads=(LoadReading("immersion", 0),))
    decision, _ = control(off, None, Memory(), params)
    assert not decision.commanding and decision.command is None


def test_top_up_below_the_floor_is_commanded_and_off_switch_disables_hand_back() -> None:
    assert run([snap(0, soc=9, battery=0, grid=-2000, mode=SELF)])[0] == ("charge", -2000, "self_use")
    commanded = ControlParams(battery=B, ramp_w_per_s=1000, inverter_self_use=False)
    assert run([snap(0, battery=0, grid=1234, mode=SELF)], commanded) == [("discharge", 1200, "self_use")]


def test_taking_control_back_ramps_from_what_the_battery_was_doing() -> None:
    """Self-use charged 1.2 kW; the plan then asks 3 kW: the ramp starts from 1.2 kW, not from 0."""
    schedule = plan([0.0, -3000.0], [0.0, 3500.0], [Intent.SELF_USE, Intent.CHARGE])
    params = ControlParams(battery=B, ramp_w_per_s=100, dwell_s=0)
    out = run([snap(1790, battery=-1200, grid=-5), snap(1800, battery=-1200, grid=0)], params, schedule)
    assert out == [(None, -1205, "plan_self_use"), ("charge", -2200, "ramp")]


@settings(max_examples=200, deadline=None)
@given(
    loads=st.lists(st.floats(0, 6000), min_size=5, max_size=40),
    pv=st.floats(0, 4000),
    soc=st.floats(5, 100),
    export_limit=st.one_of(st.none(), st.floats(0, 3000)),
    mode=st.sampled_from([M.AUTO, M.SELF_USE, M.HOLD, M.FORCE_CHARGE, M.FORCE_DISCHARGE]),
)
def test_never_handed_back_while_a_protection_binds(loads, pv, soc, export_limit, mode) -> None:
    params = ControlParams(battery=B, export_limit_w=export_limit)
    memory, battery_w = Memory(), 0.0
    for k, load in enumerate(loads):
        s = snap(5.0 * k, soc=soc, battery=battery_w, grid=load - pv - battery_w, mode=ModeState(mode))
        decision, memory = control(s, None, memory, params)
        if decision.commanding:
            battery_w = decision.battery_w
            continue
        # (a forced mode that has run its course resumes auto)
        assert decision.command is None and decision.mode in (M.AUTO.value, M.SELF_USE.value)
        # what the inverter's CT asks for, which is what it will do
        wanted = s.battery_w + s.grid_w
        assert decision.battery_w == pytest.approx(max(-B.max_charge_w, min(B.max_discharge_w, wanted)))
        assert soc >= B.floor_pct
        if soc <= B.reserve_pct:
            assert wanted <= 0  # no discharge at or below the reserve
        if soc >= B.ceiling_pct:
            assert wanted >= 0  # no charge at or above the ceiling
        if export_limit is not None and decision.battery_w > -B.max_charge_w:  # (at its limit no setpoint helps)
            assert s.grid_w - (decision.battery_w - s.battery_w) >= -export_limit - 1e-6
        battery_w = decision.battery_w


# -- no flip-flop at the band's edges ---------------------------------------------------------------


def _run_soc(socs: list[float], house_w: float) -> list[tuple[bool, str]]:
    """Self-use with the house at ``house_w`` (a surplus when negative), one reading every 10 s; the
    battery does what it was told, or when handed back what the inverter's own self-use does
    (zero the grid). (commanding, reason) per reading."""
    memory, battery, out = Memory(), house_w, []
    for i, soc in enumerate(socs):
        decision, memory = control(
            snap(10 * i, soc=soc, battery=battery, grid=house_w - battery, mode=SELF), None, memory, PARAMS
        )
        out.append((decision.commanding, decision.reason))
        battery = decision.battery_w if decision.commanding else house_w
    return out


@pytest.mark.parametrize(
    ("house_w", "socs", "expected"),
    [
        # At the 20 % reserve with the house drawing 600 W: a SoC reported to a fraction of a percent
        # (or one rebounding while the battery rests) hovered around it, and every reading above 20
        # handed back (the inverter discharged again) while every reading at 20 took control back.
        # Now it holds the discharge until the SoC is 1 point above the reserve.
        (
            600.0,
            [22, 21, 20, 20.4, 20.0, 20.6, 20.2, 20.9, 21.0, 20.5, 20.0],
            [
                (False, "self_use"), (False, "self_use"),
                (True, "reserve_floor"), (True, "reserve_floor"), (True, "reserve_floor"), (True, "reserve_floor"),
                (True, "reserve_floor"), (True, "reserve_floor"),
                (False, "self_use"), (False, "self_use"),  # resumed at 21, handed back above 20
                (True, "reserve_floor"),
            ],
        ),
        # At the 97 % ceiling with 800 W of surplus: the same at the top, until 1 point below it.
        (
            -800.0,
            [95, 96.5, 97, 96.8, 97.0, 96.4, 96.1, 96.0, 96.5, 97.0],
            [
                (False, "self_use"), (False, "self_use"),
                (True, "soc_ceiling"), (True, "soc_ceiling"), (True, "soc_ceiling"), (True, "soc_ceiling"),
                (True, "soc_ceiling"),
                (False, "self_use"), (False, "self_use"),  # resumed at 96, handed back below 97
                (True, "soc_ceiling"),
            ],
        ),
    ],
)  # fmt: skip
def test_no_flip_flop_between_handed_back_and_commanded_at_the_bands_edges(
    house_w: float, socs: list[float], expected: list[tuple[bool, str]]
) -> None:
    got = _run_soc(socs, house_w)
    assert got == expected
    # The edge is met, left once the SoC is a point inside, and met again: three changes of hands.
    changes = sum(a[0] != b[0] for a, b in itertools.pairwise(got))
    assert changes <= 3
