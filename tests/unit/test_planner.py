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
