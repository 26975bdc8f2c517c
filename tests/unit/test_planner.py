"""The planner: exact against a full HiGHS MILP, physical, and sensible on Economy 7."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from services.dispatcher.core.planner import PlanInputs, Schedule, plan, reference_milp
from services.dispatcher.core.replan import forecast_error_pct, should_replan
from shared.config.tariff import TariffConfig
from shared.energy.battery import BatteryModel
from shared.energy.tariff import tariff_from_config
from shared.messages import Intent

START = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


def _random_case(rng: np.random.Generator, n: int) -> PlanInputs:
    battery = BatteryModel(
        capacity_wh=float(rng.uniform(3000, 15000)),
        max_charge_w=float(rng.uniform(1000, 5000)),
        max_discharge_w=float(rng.uniform(1000, 5000)),
        floor_pct=5.0,
        reserve_pct=float(rng.uniform(5, 30)),
        ceiling_pct=float(rng.uniform(80, 100)),
    )
    return PlanInputs(
        start=START,
        step_s=1800,
        soc_pct=float(rng.uniform(0, 100)),
        # Export often above import, and some negative prices: the cases no plain LP gets right.
        import_price=rng.uniform(-0.05, 0.4, n),
        export_price=rng.uniform(0.0, 0.3, n),
        pv_w=np.clip(rng.normal(1000, 1500, n), 0, None),
        load_w=rng.uniform(200, 3000, n),
        battery=battery,
        export_limit_w=float(rng.uniform(2000, 4000)) if rng.random() < 0.3 else None,
    )


def _check_physical(inputs: PlanInputs, s: Schedule) -> None:
    b = inputs.battery
    assert np.all(s.soc_pct_end >= min(b.reserve_pct, inputs.soc_pct) - 1e-6)
    assert np.all(s.soc_pct_end <= max(b.ceiling_pct, inputs.soc_pct) + 1e-6)
    assert np.all(s.battery_w <= b.max_discharge_w + 1e-6) and np.all(s.battery_w >= -b.max_charge_w - 1e-6)
    np.testing.assert_allclose(inputs.load_w, inputs.pv_w + s.grid_w + s.battery_w, atol=1e-3)


@pytest.mark.parametrize("seed", range(8))
def test_planner_within_half_a_percent_of_the_milp_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    inputs = _random_case(rng, int(rng.integers(8, 25)))
    ours = plan(inputs)
    ref = reference_milp(inputs)
    assert ref.binaries == 2 * inputs.steps
    # Relative to the larger of |optimum| and one currency unit: objectives near 0 have no scale.
    assert ours.objective - ref.objective <= 0.005 * max(abs(ref.objective), 1.0)
    assert ours.objective >= ref.objective - 1e-6 * max(abs(ref.objective), 1.0)
    _check_physical(inputs, ours)


def test_plain_lp_would_import_and_export_at_once_but_plan_does_not() -> None:
    # One step, export pays more than import costs: the relaxation happily does both at once.
    n = 4
    inputs = PlanInputs(
        start=START,
        step_s=1800,
        soc_pct=50,
        import_price=[0.05] * n,
        export_price=[0.2] * n,
        pv_w=[0.0] * n,
        load_w=[500.0] * n,
        battery=BatteryModel(capacity_wh=5000, max_charge_w=2000, max_discharge_w=2000),
    )
    s = plan(inputs)
    assert s.solver in ("lp_pinned", "milp") and s.binaries == n
    ref = reference_milp(inputs)
    assert s.objective == pytest.approx(ref.objective, rel=0.005, abs=1e-4)
    _check_physical(inputs, s)


def test_economy7_charges_in_the_cheap_window_and_spends_in_the_peak() -> None:
    tariff = tariff_from_config(
        TariffConfig.model_validate(
            {
                "import": {
                    "kind": "two_rate",
                    "off_peak": {"start": "00:30", "end": "07:30", "price_per_kwh": 0.09},
                    "peak_price_per_kwh": 0.30,
                },
                "export": {"kind": "flat", "price_per_kwh": 0.05},
            }
        )
    )
    starts = pd.date_range("2025-01-15T18:00Z", periods=72, freq="30min")
    imp, exp = tariff.prices(starts, 1800)
    inputs = PlanInputs(
        start=starts[0].to_pydatetime(),
        step_s=1800,
        soc_pct=30,
        import_price=imp,
        export_price=exp,
        pv_w=np.zeros(72),
        load_w=np.full(72, 600.0),
        battery=BatteryModel(capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000),
    )
    s = plan(inputs)
    assert s.solver == "lp"  # import never cheaper than export: the LP is exact
    cheap = imp == 0.09
    assert all(s.intents[k] is Intent.CHARGE for k in np.nonzero(s.battery_w < -100)[0])
    assert np.all(s.battery_w[~cheap] >= -1e-6)  # never charges at peak price
    assert np.all(s.battery_w[cheap] <= 1e-6)  # never discharges in the cheap window
    assert s.battery_w[cheap].sum() < -10_000  # it does charge overnight
    peak_next_day = (~cheap) & (np.arange(72) > 30)
    assert np.mean(s.battery_w[peak_next_day] > 0) > 0.5  # and spends it in the next day's peak
    message = s.to_message(ts=START)
    assert len(message.steps) == 72 and Schedule.from_message(message).intents == s.intents


def test_switch_cost_removes_pointless_flips() -> None:
    # Alternating prices a hair apart: without a switch cost it would chase every half-penny.
    n = 24
    imp = np.where(np.arange(n) % 2 == 0, 0.200, 0.206)
    base = dict(
        start=START,
        step_s=1800,
        soc_pct=50,
        import_price=imp,
        export_price=np.full(n, 0.0),
        pv_w=np.zeros(n),
        load_w=np.full(n, 1500.0),
        cycle_cost_per_kwh=0.0,
        terminal_value_factor=1.0,
        battery=BatteryModel(
            capacity_wh=10000,
            max_charge_w=3000,
            max_discharge_w=3000,
            charge_efficiency=1,
            discharge_efficiency=1,
        ),
    )
    free = plan(PlanInputs(**base, switch_cost=0.0))
    costly = plan(PlanInputs(**base, switch_cost=0.01))
    flips = lambda s: int(np.sum(np.abs(np.diff(s.battery_w)) > 100))  # noqa: E731
    assert flips(costly) < flips(free)


def test_replan_triggers() -> None:
    now = START
    assert should_replan(now, None, 1800) == "first"
    assert should_replan(now, now - timedelta(minutes=30), 1800) == "scheduled"
    assert should_replan(now, now - timedelta(minutes=5), 1800) is None
    assert (
        should_replan(now, now - timedelta(minutes=5), 1800, error_pct=45, threshold_pct=30)
        == "forecast_error"
    )
    assert forecast_error_pct(1000, 1500) == 50.0
    assert forecast_error_pct(10, 110) == 50.0  # a floor keeps tiny totals sane


# -- the backtest's fast path gives the same decisions as the plain one ---------------------------


def _e7_scenario_inputs(start: datetime, soc_pct: float, seed: int, scale: float = 1.0) -> PlanInputs:
    """A 36 h scenario plan on Economy 7 from ``start``: 7 noisy load and PV days (load times ``scale``)."""
    rng = np.random.default_rng(seed)
    tariff = tariff_from_config(
        TariffConfig.model_validate(
            {
                "import": {
                    "kind": "two_rate",
                    "off_peak": {"start": "00:30", "end": "07:30", "price_per_kwh": 0.09},
                    "peak_price_per_kwh": 0.30,
                },
                "export": {"kind": "flat", "price_per_kwh": 0.05},
            }
        )
    )
    steps = pd.date_range(start, periods=72, freq="30min")
    imp, exp = tariff.prices(steps, 1800)
    hours = np.asarray(steps.hour + steps.minute / 60.0)
    sun = np.clip(np.sin((hours - 6.0) / 12.0 * np.pi), 0.0, None)
    load_s = np.clip(400.0 + 800.0 * np.exp(-0.5 * ((hours - 18.5) / 2.0) ** 2) + rng.normal(0, 250, (7, 72)), 0, None)
    load_s *= scale
    pv_s = np.clip(sun * rng.uniform(300.0, 3000.0, (7, 1)), 0, None)
    return PlanInputs(
        start=start,
        step_s=1800,
        soc_pct=soc_pct,
        import_price=imp,
        export_price=exp,
        pv_w=pv_s.mean(axis=0),
        load_w=load_s.mean(axis=0),
        battery=BatteryModel(capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000, reserve_pct=20),
        quantum_w=50.0,
        load_scenarios_w=load_s,
        pv_scenarios_w=pv_s,
    )


@pytest.mark.parametrize("hour", [1.0, 6.5, 12.0, 18.0, 23.5])
def test_first_step_only_decides_step_0_as_the_whole_plan_does(hour: float) -> None:
    # Off-peak hours (1:00, 6:30) need the scenario LP; the rest are the self-use step that
    # first_step_only answers without any LP. Step 0 must be the same either way.
    start = datetime(2025, 1, 15, tzinfo=UTC) + timedelta(hours=hour)
    # The heavy house (4x) needs more than the battery's 3 kW: step 0 is then capped at it.
    for seed, (soc, scale) in enumerate(((25.0, 1.0), (60.0, 1.0), (95.0, 4.0))):
        inputs = _e7_scenario_inputs(start, soc, seed, scale)
        whole = plan(inputs, exact=False)
        first = plan(inputs, exact=False, first_step_only=True)
        assert len(first.battery_w) in (1, len(whole.battery_w))
        assert first.intents[0] is whole.intents[0]
        assert first.battery_w[0] == whole.battery_w[0]
        assert first.grid_w[0] == whole.grid_w[0]
        if first.solver == "lp_scenarios":  # the same LP: its step 0 in full
            assert len(first.battery_w) == 1
            assert first.soc_pct_end[0] == pytest.approx(whole.soc_pct_end[0], abs=1e-9)
            assert first.cost == pytest.approx(whole.cost, abs=1e-9)
        assert first.index_at(start + timedelta(minutes=29)) == 0
    if 0.5 <= hour < 7.5:
        assert whole.solver == "lp_scenarios"
    else:
        assert first.solver == "self_use" and len(first.battery_w) == 1


def test_classify_all_matches_classify_step_by_step() -> None:
    from services.dispatcher.core.planner import TOLERANCE_W, _classify_all, classify

    edges = np.array([-3000.0, -TOLERANCE_W - 1e-9, -TOLERANCE_W, 0.0, TOLERANCE_W, TOLERANCE_W + 1e-9, 3000.0])
    battery, grid = (a.reshape(-1) for a in np.meshgrid(edges, edges))
    rng = np.random.default_rng(3)
    battery = np.concatenate([battery, rng.uniform(-100, 100, 500)])
    grid = np.concatenate([grid, rng.uniform(-100, 100, 500)])
    one_by_one = tuple(classify(float(b), float(g)) for b, g in zip(battery, grid, strict=True))
    assert _classify_all(battery, grid) == one_by_one


def test_kept_solver_answers_as_a_fresh_one_and_shifts_highs_own_basis() -> None:
    # A night of half-hourly re-plans through the one kept HiGHS instance (only the costs and
    # bounds that changed are handed over; the basis is shifted one step from numpy arrays)
    # against a fresh instance per plan: the same optimum each time. And the shifted basis is
    # exactly HiGHS's own basis (HighsBasis.col_status / row_status) moved one step along.
    import services.dispatcher.core.planner as planner

    kept = planner._Reusable()
    first = datetime(2025, 1, 15, 0, 30, tzinfo=UTC)
    compared = 0
    for k in range(14):
        inputs = _e7_scenario_inputs(first + timedelta(minutes=30 * k), 30.0 + 4 * k, 100 + k)
        model = planner._Model(inputs, inputs.load_scenarios_w, inputs.pv_scenarios_w)
        slot = next(iter(kept._solvers.values()), None)
        if slot is not None and slot.start == inputs.start - timedelta(minutes=30):
            n = model.n
            ours = slot.shifted_basis(model.count * 6 * n, model.count * 2 * n, n)
            theirs = slot.highs.getBasis()
            assert ours is not None
            cols = planner._shift(np.array([int(s) for s in theirs.col_status]), model.count * 6 * n, n)
            rows = planner._shift(np.array([int(s) for s in theirs.row_status]), model.count * 2 * n, n)
            assert [int(s) for s in ours.col_status] == cols.tolist()
            assert [int(s) for s in ours.row_status] == rows.tolist()
            compared += 1
        _, hot, _ = kept.run(model, 5.0, shared=True)
        _, cold, _ = planner._Reusable().run(model, 5.0, shared=True)
        assert hot == pytest.approx(cold, rel=1e-9, abs=1e-9)
    assert compared == 13
