"""Backtest policies: the yardstick is the floor, parallel equals sequential, self_use against a plain
greedy, scenarios from history only, and the planner's scenario and no-battery-export rules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.backtest.data import Series, read_series
from services.backtest.engine import Setup, simulate
from services.backtest.greedy import greedy_self_use
from services.backtest.parallel import run_policies
from services.backtest.perfect import perfect_foresight
from services.dispatcher.core.controller import ControlParams, Memory, control
from services.dispatcher.core.forecast import PvArray, history_scenarios
from services.dispatcher.core.planner import PlanInputs, plan
from services.dispatcher.core.snapshot import ModeState, Snapshot
from shared.config.dispatcher import DispatcherConfig
from shared.config.tariff import TariffConfig
from shared.energy.battery import BatteryModel
from shared.energy.tariff import tariff_from_config
from shared.messages import DispatcherModeName, Intent

SEED = Path(__file__).parents[2] / "deploy/scenarios/seed-house-year.csv"
E7 = {
    "import": {
        "kind": "two_rate",
        "off_peak": {"start": "00:30", "end": "07:30", "price_per_kwh": 0.09},
        "peak_price_per_kwh": 0.30,
    },
    "export": {"kind": "flat", "price_per_kwh": 0.05},
}


def _setup(**dispatcher: object) -> Setup:
    return Setup(
        BatteryModel(capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000, reserve_pct=20, ceiling_pct=97),
        DispatcherConfig(pv_azimuth_deg=141, horizon_hours=24, **dispatcher),  # type: ignore[arg-type]
        tariff_from_config(TariffConfig.model_validate(E7)),
        "Europe/London",
        PvArray(4.0, 30.0, 141.0, 53.6, -0.5),
    )


def _slice(days: int, first_day: int = 0) -> Series:
    full = read_series(SEED)
    rows = slice(first_day * 48, (first_day + days) * 48)
    return Series(full.times[rows], full.load_w[rows], full.pv_w[rows], full.step_s)


def test_perfect_is_the_floor_and_reports_its_own_bill() -> None:
    series = _slice(10, first_day=100)
    setup = _setup()
    results = run_policies(series, ["none", "self_use", "planner", "perfect"], setup, workers=2)
    perfect = results["perfect"]
    assert perfect.method == "convex_dp"
    imp, exp = setup.tariff.prices(series.times, series.step_s)
    best = perfect_foresight(
        series.times[0].to_pydatetime(), 1800, series.load_w, series.pv_w, imp, exp, setup.battery, 50.0
    )
    # Replayed through the backtest's own accounting, the optimum costs what the optimiser said.
    assert perfect.cost == pytest.approx(best.bill, abs=1e-6)
    for name in ("none", "self_use", "planner"):
        assert perfect.cost <= results[name].cost + 1e-9, name
    # Wear and switching are reported beside the bill, not in it.
    assert perfect.wear_cost > 0 and perfect.switching_cost > 0
    assert results["none"].wear_cost == 0


def test_parallel_run_equals_one_by_one() -> None:
    series = _slice(4, first_day=30)
    setup = _setup()
    together = run_policies(series, ["none", "self_use", "planner"], setup, workers=2)
    for name in ("none", "self_use", "planner"):
        alone = simulate(series, name, setup)
        # The planner's data crosses a month, so it ran in two spans (tests/unit/test_backtest_spans.py).
        spans = {"spans": 2, "spans_rerun": 0} if name == "planner" else {}
        assert together[name].as_dict() == {**alone.as_dict(), **spans}, name


def test_self_use_against_a_plain_greedy() -> None:
    series = _slice(14, first_day=120)
    # As shipped, self-use goals are handed to the inverter's own self-use (no setpoint, so no
    # deadband or quantum): self_use is the greedy, within 1%.
    shipped = simulate(series, "self_use", _setup())
    assert shipped.greedy_cost is not None
    assert shipped.cost == pytest.approx(shipped.greedy_cost, rel=0.01)
    # Driven by setpoints instead, the controller's deadband and quantum cost money, reported as
    # their own figure; without them (the data's steps are 30 min, so ramp and dwell never bind)
    # self_use is the greedy again.
    commanded = simulate(series, "self_use", _setup(inverter_self_use=False))
    figures = commanded.as_dict()
    assert figures["controller_effect_cost"] == pytest.approx(
        commanded.cost - figures["greedy_self_use_cost"], abs=1e-3
    )
    assert figures["controller_effect_cost"] > 0
    exact = simulate(series, "self_use", _setup(inverter_self_use=False, deadband_w=0.0, quantum_w=1.0))
    assert exact.greedy_cost is not None
    assert exact.cost == pytest.approx(exact.greedy_cost, rel=0.01)


def test_greedy_self_use_by_hand() -> None:
    b = BatteryModel(capacity_wh=2000, max_charge_w=1000, max_discharge_w=400, reserve_pct=10, ceiling_pct=90)
    # 1 h steps from 1,000 Wh: a 600 W surplus is all charged (570 Wh stored); 400 W of load is
    # covered (421 Wh out); a 2 kW surplus charges only what fits under the 1,800 Wh ceiling.
    out = greedy_self_use(np.array([0.0, 400.0, 0.0]), np.array([600.0, 0.0, 2000.0]), b, 50.0, 3600)
    assert out[0] == pytest.approx(-600.0)
    assert out[1] == pytest.approx(400.0)
    soc = 1000 + 600 * 0.95 - 400 / 0.95
    assert out[2] == pytest.approx(-(1800 - soc) / 0.95)


def test_history_scenarios_take_whole_past_days_and_nothing_later() -> None:
    step_s = 1800
    slots = 48
    keys = np.arange(1000, 1000 + 10 * slots)  # ten days of history
    load = keys * 1.0  # the value names its own step
    pv = keys * 2.0
    first = int(keys[-1]) + 1
    load_s, pv_s = history_scenarios(keys, load, pv, first, 72, step_s, days=7)
    assert load_s.shape == (7, 72) and pv_s.shape == (7, 72)
    j = np.arange(72)
    m = np.where(j < slots, 1, 2)
    for d in range(7):
        expected = first + j - (m + d) * slots
        np.testing.assert_array_equal(load_s[d], expected)
        np.testing.assert_array_equal(pv_s[d], expected * 2.0)
    assert load_s.max() < first  # only the past
    # A day with a hole is left out; no whole day at all gives none.
    holed = np.delete(keys, [len(keys) - 3])
    fewer, _ = history_scenarios(holed, holed * 1.0, holed * 2.0, first, 72, step_s, days=7)
    assert len(fewer) < 7
    none, _ = history_scenarios(keys[-10:], load[-10:], pv[-10:], first, 72, step_s)
    assert none.shape == (0, 72)


def _night_inputs(**extra: object) -> PlanInputs:
    tariff = tariff_from_config(TariffConfig.model_validate(E7))
    starts = pd.date_range("2025-01-15T01:00Z", periods=48, freq="30min")
    imp, exp = tariff.prices(starts, 1800)
    fields: dict[str, object] = {
        "start": starts[0].to_pydatetime(),
        "step_s": 1800,
        "soc_pct": 25,
        "import_price": imp,
        "export_price": exp,
        "pv_w": np.zeros(48),
        "load_w": np.full(48, 500.0),
        "battery": BatteryModel(capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000),
    }
    fields.update(extra)
    return PlanInputs(**fields)  # type: ignore[arg-type]


def test_scenarios_buy_for_the_bad_days_a_mean_would_miss() -> None:
    # The last cheap half-hour (07:00 UTC in January), evenings of 100-500 W across scenarios:
    # the mean (300 W) needs about 0.5 kWh more, the heavy days 1.5 kWh or more. A kWh short costs
    # 30p later, a spare one 9p now: the scenario plan buys well beyond the mean's need.
    levels = np.linspace(100.0, 500.0, 7)
    load_s = np.tile(levels[:, None], (1, 48))
    pv_s = np.zeros((7, 48))
    base: dict[str, object] = {"start": datetime(2025, 1, 15, 7, 0, tzinfo=UTC), "soc_pct": 66.6}
    tariff = tariff_from_config(TariffConfig.model_validate(E7))
    imp, exp = tariff.prices(pd.date_range(base["start"], periods=48, freq="30min"), 1800)  # type: ignore[arg-type]
    base.update(import_price=imp, export_price=exp, load_w=load_s.mean(axis=0))
    point = plan(_night_inputs(**base))
    many = plan(_night_inputs(**base, load_scenarios_w=load_s, pv_scenarios_w=pv_s))
    assert many.solver == "lp_scenarios"
    assert many.intents[0] is Intent.CHARGE and point.intents[0] is Intent.CHARGE
    assert -many.battery_w[0] > -point.battery_w[0] + 500
    # The published plan still balances at the meter with the scenarios' mean.
    np.testing.assert_allclose(many.load_w, many.pv_w + many.grid_w + many.battery_w, atol=1e-6)


def test_self_use_step_under_scenarios_is_not_capped_at_a_compromise() -> None:
    # Peak-price evening: no later price is above this one, so nothing kept back can pay later and
    # step 0 is plain self-use. Its planned grid is 0: the controller's self-use caps the battery
    # at the planned power only when the plan still imports (rations), so a heavy evening gets all
    # the battery can give, not the scenarios' mean of 600 W.
    tariff = tariff_from_config(TariffConfig.model_validate(E7))
    starts = pd.date_range("2025-01-15T17:00Z", periods=24, freq="30min")
    imp, exp = tariff.prices(starts, 1800)
    load_s = np.tile(np.linspace(200.0, 1000.0, 5)[:, None], (1, 24))
    s = plan(
        PlanInputs(
            start=starts[0].to_pydatetime(),
            step_s=1800,
            soc_pct=100,
            import_price=imp,
            export_price=exp,
            pv_w=np.zeros(24),
            load_w=load_s.mean(axis=0),
            battery=BatteryModel(capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000),
            load_scenarios_w=load_s,
            pv_scenarios_w=np.zeros((5, 24)),
        )
    )
    assert s.intents[0] is Intent.SELF_USE
    assert s.battery_w[0] == pytest.approx(600.0) and s.grid_w[0] == pytest.approx(0.0)
    decision, _ = control(
        Snapshot(
            now=s.start,
            soc_pct=100,
            battery_w=0.0,
            grid_w=1000.0,
            mode=ModeState(DispatcherModeName.AUTO),
            inverter_at=s.start,
            meter_at=s.start,
        ),
        s,
        Memory(),
        ControlParams(
            battery=BatteryModel(capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000), ramp_w_per_s=1e6
        ),
    )
    assert decision.battery_w == pytest.approx(1000.0)


def test_battery_may_export_false_keeps_battery_energy_in_the_house() -> None:
    # A 15p export above the 9p night: with battery export allowed the plan sells stored energy.
    kwargs: dict[str, object] = {"export_price": np.full(48, 0.15)}
    free = plan(_night_inputs(**kwargs), exact=False)
    kept = plan(_night_inputs(**kwargs, battery_may_export=False), exact=False)
    assert (-free.grid_w).max() > 100  # exports
    surplus = np.maximum(0.0, kept.pv_w - kept.load_w)
    assert np.all(-kept.grid_w <= surplus + 1e-6)
    assert kept.cost >= free.cost - 1e-9


def test_plan_inputs_refuse_mismatched_scenarios() -> None:
    with pytest.raises(ValueError, match="load_scenarios_w must have shape"):
        _night_inputs(load_scenarios_w=np.zeros((3, 10)), pv_scenarios_w=np.zeros((3, 10)))
    with pytest.raises(ValueError, match="come together"):
        _night_inputs(load_scenarios_w=np.zeros((3, 48)))
    assert datetime(2025, 1, 1, tzinfo=UTC)  # module imports used


def test_grid_charge_is_rounded_up_to_the_controllers_quantum() -> None:
    # The controller truncates setpoints toward zero to quantum_w: a planned 1,229 W charge would
    # become 1,200 W every step of every night. The plan rounds charges up to the quantum instead.
    exact = plan(_night_inputs())
    rounded = plan(_night_inputs(quantum_w=50.0))
    charging = [k for k, intent in enumerate(rounded.intents) if intent is Intent.CHARGE]
    assert charging
    for k in charging:
        assert rounded.battery_w[k] % 50.0 == pytest.approx(0.0, abs=1e-6)
        assert -rounded.battery_w[k] >= -exact.battery_w[k] - 1e-6
        assert -rounded.battery_w[k] <= 3000.0
    np.testing.assert_allclose(rounded.load_w, rounded.pv_w + rounded.grid_w + rounded.battery_w, atol=1e-6)


def test_planner_acting_on_step_0_only_is_the_whole_plan_replayed(monkeypatch: pytest.MonkeyPatch) -> None:
    # The backtest asks the planner for step 0 alone when it plans again before step 1 (what
    # makes a year take seconds); with the whole plan solved every time the bill is the same
    # to the last bit, on 30-minute and 1-minute data. Each run starts with no kept HiGHS
    # instance (simulate forgets them): a warm start left by an earlier run can pick another of
    # two equally cheap plans.
    import services.backtest.engine as engine

    asked: list[bool] = []

    def whole(inputs: PlanInputs, **kwargs: object) -> object:
        asked.append(bool(kwargs.pop("first_step_only", False)))
        return plan(inputs, **kwargs)  # type: ignore[arg-type]

    for series in (_slice(9, first_day=20), _minutely(_slice(3, first_day=200))):
        fast = simulate(series, "planner", _setup())
        monkeypatch.setattr(engine, "plan", whole)
        plain = simulate(series, "planner", _setup())
        monkeypatch.undo()
        assert asked and all(asked)
        asked.clear()
        assert fast.plans == plain.plans
        assert fast.cost == plain.cost
        assert fast.setpoint_changes == plain.setpoint_changes


def _minutely(series: Series) -> Series:
    times = pd.date_range(series.times[0], periods=len(series.times) * 30, freq="1min")
    return Series(times, np.repeat(series.load_w, 30), np.repeat(series.pv_w, 30), 60)
