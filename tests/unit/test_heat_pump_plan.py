"""The planner knows the heat pump (issue 13 item 3): its expected draw in the run window, capped by
its budget, on top of the base load (the recorded load less its recorded draw: nothing counted twice),
and the plan carries the energy for it into the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from services.dispatcher.core.heat_pump import DEFAULT_DUTY, Budget, decide, expected_draw_w, period_start
from services.dispatcher.core.heat_pump_plan import HeatPumpDraw, battery_shares, plan_with_heat_pumps
from services.dispatcher.core.planner import PlanInputs, Schedule, plan
from services.dispatcher.history import History
from services.dispatcher.inputs import HeatPumpPast, build_inputs
from shared.config import OngridConfig
from shared.config.loads import HeatPumpLoad
from shared.energy.battery import BatteryModel
from shared.energy.tariff import tariff_from_config

TZ = "Europe/London"
STEP = 1800
NOON = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # January: London is on UTC
BATTERY = BatteryModel(
    capacity_wh=10_400, max_charge_w=3000, max_discharge_w=3000, floor_pct=10, reserve_pct=20, ceiling_pct=97
)
HP: dict[str, Any] = {
    "id": "hp",
    "kind": "heat_pump",
    "rated_power_w": 1500,
    "run_window": {"start": "18:00", "end": "07:00"},
    "battery_budget_kwh": 1.8,
}


def config(loads: list[dict[str, Any]], daily_kwh: float = 10.0) -> OngridConfig:
    """No PV; import 10p from 13:00 to 16:00 (an afternoon cheap rate), 35p otherwise; no export."""
    return OngridConfig.model_validate(
        {
            "tariff": {
                "timezone": TZ,
                "import": {
                    "kind": "two_rate",
                    "off_peak": {"start": "13:00", "end": "16:00", "price_per_kwh": 0.10},
                    "peak_price_per_kwh": 0.35,
                },
                "export": {"kind": "flat", "price_per_kwh": 0.0},
            },
            "dispatcher": {
                "step_minutes": 30, "horizon_hours": 24, "pv_kwp": 0.0, "default_daily_load_kwh": daily_kwh,
            },
            "loads": loads,
        }
    )


def night_steps(starts: pd.DatetimeIndex) -> np.ndarray:
    hours = starts.tz_convert(TZ).hour
    return np.asarray((hours >= 18) | (hours < 7))


def house_history(days: int, hp_w: float) -> tuple[History, History]:
    """``days`` of a 200 W house whose heat pump drew ``hp_w`` from 18:00 to 21:00 each night,
    switched on the whole window: (the inverter's load history, the heat pump's draw history)."""
    house, hp = History(STEP), History(STEP)
    for k in range(days * 48):
        when = NOON - timedelta(seconds=STEP * (k + 1))
        local = when.astimezone(UTC).hour
        night = local >= 18 or local < 7
        draw = hp_w if 18 <= local < 21 else 0.0
        house.add(when, 200.0 + draw, 0.0)
        hp.add_draw(when, draw, night)
    return house, hp


def test_expected_draw_default_duty_front_loaded_to_the_budget() -> None:
    load = HeatPumpLoad.model_validate(HP)
    starts = pd.date_range(NOON, periods=48, freq=f"{STEP}s")
    empty = pd.DatetimeIndex([], tz=UTC)
    w = expected_draw_w(load, starts, STEP, TZ, empty, np.zeros(0), np.zeros(0))
    inside = night_steps(starts)
    assert not w[~inside].any()  # nothing outside the window without history
    # 1500 W x 0.5 duty = 750 W from 18:00 until 1.8 kWh is spent: 4.8 half-hours.
    first = int(np.argmax(inside))
    assert w[first : first + 4].tolist() == [1500 * DEFAULT_DUTY] * 4
    assert w[first + 4] == pytest.approx(1800 / 0.5 - 4 * 750)
    assert w.sum() * 0.5 == pytest.approx(1800.0)
    # Budget already partly used in the period in force: only the rest in this period's window.
    late = pd.date_range(datetime(2026, 1, 15, 20, 0, tzinfo=UTC), periods=48, freq=f"{STEP}s")
    w = expected_draw_w(load, late, STEP, TZ, empty, np.zeros(0), np.zeros(0), used_wh=1500.0)
    tonight = night_steps(late) & (late < datetime(2026, 1, 16, 12, 0, tzinfo=UTC))
    assert w[tonight].sum() * 0.5 == pytest.approx(300.0)
    # Tomorrow a new budget: from 18:00 to the horizon's end (19:30), 750 W for four half-hours.
    assert w[~tonight].tolist()[-4:] == [750.0] * 4 and w[~tonight].sum() * 0.5 == pytest.approx(1500.0)
    # 'grid': not capped, it runs all night.
    grid = load.model_copy(update={"after_budget": "grid"})
    w = expected_draw_w(grid, starts, STEP, TZ, empty, np.zeros(0), np.zeros(0))
    assert w[inside].tolist() == [750.0] * int(inside.sum())


def test_expected_draw_from_its_recorded_duty() -> None:
    load = HeatPumpLoad.model_validate(HP | {"battery_budget_kwh": 10.0})
    _, hp = house_history(3, hp_w=1000.0)
    past, draw, on = hp.complete(NOON)
    starts = pd.date_range(NOON, periods=48, freq=f"{STEP}s")
    w = expected_draw_w(load, starts, STEP, TZ, past, draw, on)
    hours = starts.tz_convert(TZ).hour
    # On all night, it drew 1000 W from 18:00 to 21:00 and nothing after (the house was warm).
    assert np.allclose(w[(hours >= 18) & (hours < 21)], 1000.0)
    assert np.allclose(w[(hours >= 21) | (hours < 18)], 0.0)


def test_inputs_add_the_heat_pump_and_do_not_count_it_twice() -> None:
    house, hp = house_history(7, hp_w=1200.0)
    now = NOON + timedelta(minutes=5)
    cfg = config([HP])
    tariff = tariff_from_config(cfg.tariff)
    inputs, fc = build_inputs(cfg, BATTERY, tariff, house, now, 20.0, 0.0, heat_pumps={"hp": HeatPumpPast(hp)})
    assert inputs.start == NOON and fc.load_source == "history+heat_pump"
    # 18:00-19:30 (steps 12-14): base 200 W + 1200 W; the budget (1.8 kWh) is spent by 19:30.
    assert np.allclose(inputs.load_w[12:15], 1400.0)
    assert np.allclose(inputs.load_w[:12], 200.0) and np.allclose(inputs.load_w[15:], 200.0)
    assert inputs.load_w.sum() * 0.5 == pytest.approx(200 * 24 + 1800.0)
    assert inputs.load_scenarios_w is not None
    assert np.allclose(inputs.load_scenarios_w.sum(axis=1) * 0.5, 200 * 24 + 1800.0)
    # Without the heat pump configured, the recorded load is the forecast: 1400 W until 21:00
    # (the history knows nothing of a budget), and the draw history is not used.
    inputs, fc = build_inputs(config([]), BATTERY, tariff, house, now, 20.0, 0.0, heat_pumps={"hp": HeatPumpPast(hp)})
    assert fc.load_source == "history"
    assert inputs.load_w.sum() * 0.5 == pytest.approx(200 * 24 + 1200 * 3)


def test_the_plan_carries_more_energy_into_the_window() -> None:
    """A 4.8 kWh/day house (the default shape before any history), no PV, a cheap afternoon: the
    plan buys in the afternoon what the evening and night need. With the heat pump (no history yet:
    its rating times the default duty, to the budget) it buys its budget too, so it enters the
    window fuller, and spends it there."""
    now = NOON
    soc_at_18: dict[str, float] = {}
    night_out: dict[str, float] = {}
    for name, loads in (("without", []), ("with", [HP])):
        cfg = config(loads, daily_kwh=4.8)
        inputs, _ = build_inputs(cfg, BATTERY, tariff_from_config(cfg.tariff), History(STEP), now, 20.0, 0.0)
        schedule = plan(inputs)
        k18 = 12  # the step from 18:00; SoC at its start is the end of the step before
        soc_at_18[name] = float(schedule.soc_pct_end[k18 - 1])
        night_out[name] = float(schedule.battery_w[k18:].clip(min=0).sum() * 0.5)
    extra_pct = soc_at_18["with"] - soc_at_18["without"]
    # 1.8 kWh at the battery's AC side is 1.8 / 0.96 kWh stored: 18 points of 10.4 kWh.
    assert extra_pct == pytest.approx(1800 / 0.96 / 10_400 * 100, abs=1.5), soc_at_18
    assert night_out["with"] - night_out["without"] == pytest.approx(1800.0, abs=100.0)


def test_the_planner_thread_reads_a_copy_of_the_history() -> None:
    house, _ = house_history(1, hp_w=1000.0)
    copy = house.copy()
    house.add(NOON + timedelta(hours=1), 5000.0, 0.0)  # the event loop goes on adding
    house.add(NOON - timedelta(minutes=10), 5000.0, 0.0)  # to a step already in the copy too
    starts, load, _ = copy.complete(NOON + timedelta(hours=2))
    assert len(starts) == 48 and load.max() == 1200.0


# --- the battery feeds it only as the dispatcher will (core.heat_pump_plan) ----------------------

EVENING = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)
BASE_W = 300.0
HP_W = 1000.0


def _evening(soc_pct: float, after_budget: str, budget_kwh: float = 1.8) -> tuple[PlanInputs, HeatPumpDraw]:
    """From 18:00, 12 half-hours of a 300 W house and a 1 kW heat pump in its window, import 35p
    until 20:00 and 9p after (the battery covers all it can in the first two hours), export 5p,
    no PV."""
    n = 12
    load = HeatPumpLoad.model_validate(
        {**HP, "after_budget": after_budget, "battery_budget_kwh": budget_kwh, "min_soc_pct": 25.0}
    )
    draw = np.full(n, HP_W)
    inputs = PlanInputs(
        start=EVENING,
        step_s=STEP,
        soc_pct=soc_pct,
        import_price=np.where(np.arange(n) < 4, 0.35, 0.09),
        export_price=np.full(n, 0.05),
        pv_w=np.zeros(n),
        load_w=BASE_W + draw,
        battery=BATTERY,
    )
    return inputs, HeatPumpDraw(load, draw)


def _fed_kwh(schedule: Schedule) -> np.ndarray:
    """Battery energy per step beyond the house's base load: what went to the heat pump (kWh)."""
    return np.maximum(0.0, schedule.battery_w - BASE_W) * STEP / 3600.0 / 1000.0


def _soc_at_start(schedule: Schedule) -> np.ndarray:
    return np.concatenate([[schedule.soc_pct_start], schedule.soc_pct_end[:-1]])


def test_below_its_floor_the_heat_pump_is_grid_load_under_grid() -> None:
    # 32 %: 0.7 kWh above the heat pump's 25 % floor, 1.25 kWh above the 20 % reserve. The plan
    # that took the heat pump as plain load fed it from the battery down to the reserve; the
    # dispatcher stops feeding it at 25 % and the battery then covers the house's 300 W alone.
    inputs, hp = _evening(32.0, "grid")
    naive = plan(inputs)
    below = _soc_at_start(naive) < 25.0
    assert (naive.battery_w[below] > BASE_W + 1.0).any()  # what the review found
    planned = plan_with_heat_pumps(inputs, (hp,), TZ, plan)
    below = _soc_at_start(planned) <= 25.0 + 1e-6
    assert below.any()
    assert (planned.battery_w[below] <= BASE_W + 1e-6).all()
    # Above the floor it still feeds it, and the battery still goes down to the reserve for the house.
    assert _fed_kwh(planned).sum() > 0.3
    assert planned.soc_pct_end.min() == pytest.approx(BATTERY.reserve_pct, abs=0.01)
    # The heat pump's energy stays in the plan's load (on from the grid), and the plan stays feasible.
    np.testing.assert_allclose(planned.load_w, BASE_W + HP_W)


def test_past_its_budget_the_battery_stops_feeding_it() -> None:
    # 80 %: plenty above the floor. The budget (1.8 kWh a night) stops the feeding; the naive plan
    # fed it all evening. The step that crosses the budget is fed whole (the dispatcher's own count
    # lags a step too).
    inputs, hp = _evening(80.0, "grid")
    assert _fed_kwh(plan(inputs)).sum() > 1.8 + 1.0
    planned = plan_with_heat_pumps(inputs, (hp,), TZ, plan)
    assert 1.8 - 1e-6 <= _fed_kwh(planned).sum() <= 1.8 + HP_W * STEP / 3600.0 / 1000.0 + 1e-6
    np.testing.assert_allclose(planned.load_w, BASE_W + HP_W)


def test_under_off_it_is_switched_off_where_the_battery_stops_feeding_it() -> None:
    inputs, hp = _evening(32.0, "off", budget_kwh=5.0)
    planned = plan_with_heat_pumps(inputs, (hp,), TZ, plan)
    off = planned.load_w < BASE_W + HP_W - 1e-6
    assert off.any() and np.allclose(planned.load_w[off], BASE_W)  # no heat pump in those steps
    # It runs while the battery feeds it, above the floor (as much as the plan gives it then: a
    # plan that rations the battery feeds it in part, the dispatcher too).
    on = ~off
    assert on.any() and (_soc_at_start(planned)[on] > 25.0 - 1e-6).all()
    assert (planned.battery_w[on] > BASE_W).all()
    # Where it is off the battery covers the house alone, down to the reserve.
    assert planned.soc_pct_end.min() == pytest.approx(BATTERY.reserve_pct, abs=0.01)


def test_the_walk_leaves_a_plan_alone_when_the_battery_feeds_it_within_budget_and_floor() -> None:
    inputs, hp = _evening(95.0, "grid", budget_kwh=20.0)
    assert plan_with_heat_pumps(inputs, (hp,), TZ, plan).battery_w.tolist() == plan(inputs).battery_w.tolist()


# -- the walk as the dispatcher decides: its feeding state now, one discharge shared ------------------


def _walk_inputs(n: int) -> pd.DatetimeIndex:
    return pd.date_range(EVENING, periods=n, freq=f"{STEP}s")


@pytest.mark.parametrize("feeding", [False, True])
@pytest.mark.parametrize("after_budget", ["grid", "off"])
def test_the_walk_starts_from_the_dispatchers_feeding_state(feeding: bool, after_budget: str) -> None:
    """SoC 25.5 %, between the heat pump's 25 % floor and floor + its hysteresis: the battery feeds
    it only if it was already feeding it (``Budget.feeding``); not fed yet (no budget: False), it
    waits for 27 %. The walk must start where the dispatcher is, step for step as ``decide``."""
    n = 4
    load = HeatPumpLoad.model_validate({**HP, "after_budget": after_budget, "min_soc_pct": 25.0})
    draw = np.full(n, HP_W)
    soc_end = np.full(n, 25.5)
    battery_w = np.full(n, HP_W)
    starts = _walk_inputs(n)
    ((planned, excluded),) = battery_shares(
        (HeatPumpDraw(load, draw, feeding=feeding),), starts, STEP, TZ, 25.5, soc_end, battery_w, BATTERY.reserve_pct
    )
    budget: Budget | None = Budget(load.id, period_start(load, EVENING, TZ), 0.0, feeding) if feeding else None
    for t in range(n):
        call = decide(
            load, budget, now=starts[t].to_pydatetime(), timezone=TZ, soc_pct=25.5,
            reserve_pct=BATTERY.reserve_pct, battery_w=0.0, power_w=HP_W, was_on=False, dt_s=0.0,
        )  # fmt: skip
        budget = call.budget
        fed = bool(planned[t] > 0 and excluded[t] == 0)
        assert fed is call.battery_feeds, t
        if not call.battery_feeds:
            assert (planned[t], excluded[t]) == ((HP_W, HP_W) if after_budget == "grid" else (0.0, 0.0)), t
    assert budget is not None and budget.feeding is feeding  # never crossed a threshold


@pytest.mark.parametrize(("priorities", "first"), [((30, 40), "a"), ((40, 30), "b"), ((30, 30), "a")])
def test_two_heat_pumps_share_one_discharge_in_priority_order(priorities: tuple[int, int], first: str) -> None:
    """1 kW of discharge, two 1 kW heat pumps with 1 kWh each: it feeds the first in the
    dispatcher's order (lower priority number; config order on a tie) for two half-hours, which
    spends that one's budget only; the other's is untouched and it is fed after (before, each
    counted the whole discharge: both budgets spent after an hour, the second fed nothing)."""
    n = 4
    each = {"battery_budget_kwh": 1.0, "after_budget": "grid"}
    loads = [
        HeatPumpLoad.model_validate({**HP, **each, "id": name, "priority": p})
        for name, p in zip("ab", priorities, strict=True)
    ]
    draws = tuple(HeatPumpDraw(load, np.full(n, HP_W)) for load in loads)
    out = battery_shares(
        draws, _walk_inputs(n), STEP, TZ, 80.0, np.full(n, 80.0), np.full(n, HP_W), BATTERY.reserve_pct
    )
    excluded = {load.id: ex.tolist() for load, (_, ex) in zip(loads, out, strict=True)}
    second = "b" if first == "a" else "a"
    assert excluded[first] == [0.0, 0.0, HP_W, HP_W]  # its 1 kWh spent in the first hour
    assert excluded[second] == [0.0, 0.0, 0.0, 0.0]  # fed in the second hour, within its own budget
    for draw, _ in out:  # under grid both stay on all evening: their draw is load throughout
        np.testing.assert_allclose(draw, HP_W)
