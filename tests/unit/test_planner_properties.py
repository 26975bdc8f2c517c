"""``plan()`` over the configurations a review suspected: it returns a feasible plan, never raises.

Hypothesis draws the awkward corners together: an export price above the night import price (the
non-convex path: DP directions, then the LP with those directions fixed), negative prices, a
February day with no PV at all, a heat pump's draw on top of the house, ``battery_may_export``
either way, an export limit, a SoC anywhere from the floor to full (at, below or above the reserve
and the ceiling), the battery's power now, the controller's quantum, scenarios. Every plan is
checked against the physical constraints computed from the inputs alone, not from the planner's
model.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.dispatcher.core.planner import PlanInputs, Schedule, plan
from shared.energy import soc_limits
from shared.energy.battery import BatteryModel
from shared.messages import Intent

FEBRUARY = datetime(2026, 2, 10, tzinfo=UTC)

# Watts of slack in the checks: the LP's feasibility tolerance on a few-kW flow.
SLACK_W = 1e-3


@st.composite
def battery_models(draw: st.DrawFn) -> BatteryModel:
    floor = draw(st.sampled_from([0.0, 5.0, 10.0]))
    reserve = draw(st.sampled_from([floor, floor + 5.0, 20.0, 25.0, 40.0]))
    ceiling = draw(st.sampled_from([max(reserve, 80.0), 90.0, 100.0]))
    return BatteryModel(
        capacity_wh=draw(st.sampled_from([2400.0, 5200.0, 10400.0, 15000.0])),
        max_charge_w=draw(st.sampled_from([0.0, 800.0, 3000.0, 5000.0])),
        max_discharge_w=draw(st.sampled_from([0.0, 800.0, 3000.0, 5000.0])),
        charge_efficiency=draw(st.sampled_from([0.9, 0.95, 1.0])),
        discharge_efficiency=draw(st.sampled_from([0.9, 0.95, 1.0])),
        floor_pct=floor,
        reserve_pct=max(reserve, floor),
        ceiling_pct=max(ceiling, reserve),
    )


@st.composite
def plan_inputs(draw: st.DrawFn) -> PlanInputs:
    n = draw(st.integers(1, 60))
    step_s = draw(st.sampled_from([900, 1800, 3600]))
    battery = draw(battery_models())
    start_hour = draw(st.integers(0, 23))
    hour = (np.arange(n) * step_s / 3600.0 + start_hour) % 24.0
    prices = draw(
        st.sampled_from(["economy7_15p_export", "economy7_5p_export", "random_export_above", "negative", "flat"])
    )
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if prices.startswith("economy7"):
        night = (hour >= 0.5) & (hour < 7.5)
        imp = np.where(night, 0.09, 0.30)
        exp = np.full(n, 0.15 if prices == "economy7_15p_export" else 0.05)
    elif prices == "random_export_above":
        imp = rng.uniform(0.0, 0.4, n)
        exp = imp + rng.uniform(-0.2, 0.2, n)
    elif prices == "negative":
        imp = rng.uniform(-0.1, 0.4, n)
        exp = np.minimum(imp, rng.uniform(-0.05, 0.2, n))
    else:
        imp, exp = np.full(n, 0.25), np.full(n, 0.05)
    pv_kind = draw(st.sampled_from(["zero", "random", "big"]))
    pv = {"zero": np.zeros(n), "random": rng.uniform(0, 3000, n), "big": rng.uniform(3000, 9000, n)}[pv_kind]
    load = rng.uniform(0, 4000, n)
    # A heat pump run in its window (evening and night here), drawing on top of the house.
    hp_rating = draw(st.sampled_from([0.0, 1500.0, 3000.0]))
    in_window = (hour >= 18.0) | (hour < 7.0)
    hp_w = np.where(in_window, hp_rating * rng.uniform(0.3, 1.0, n), 0.0)
    load = load + hp_w
    # Past its budget or SoC floor (after_budget: grid) the heat pump is not the battery's to cover.
    no_battery = hp_w * (rng.random(n) < 0.5) if draw(st.booleans()) else None
    capacity = battery.capacity_wh
    soc_pct = draw(
        st.one_of(
            st.sampled_from([battery.floor_pct, battery.reserve_pct, battery.ceiling_pct, 100.0]),
            st.floats(battery.floor_pct, 100.0),
            st.just(max(0.0, battery.reserve_pct - 100.0 / capacity)),  # a Wh below the reserve
        )
    )
    scenarios = draw(st.booleans())
    load_s = pv_s = None
    if scenarios:
        load_s = np.clip(load[None, :] * rng.uniform(0.5, 1.5, (4, n)), 0.0, None)
        pv_s = np.clip(pv[None, :] * rng.uniform(0.0, 1.5, (4, n)), 0.0, None)
    return PlanInputs(
        start=FEBRUARY + timedelta(hours=start_hour),
        step_s=step_s,
        soc_pct=float(min(100.0, max(0.0, soc_pct))),
        import_price=imp,
        export_price=exp,
        pv_w=pv,
        load_w=load,
        battery=battery,
        switch_cost=draw(st.sampled_from([0.0, 0.002])),
        cycle_cost_per_kwh=draw(st.sampled_from([0.0, 0.005])),
        export_limit_w=draw(st.sampled_from([None, 0.0, 600.0, 3680.0])),
        import_limit_w=draw(st.sampled_from([23_000.0, 3000.0])),
        battery_power_now_w=draw(st.sampled_from([0.0, -3000.0, 2500.0])),
        battery_may_export=draw(st.booleans()),
        load_scenarios_w=load_s,
        pv_scenarios_w=pv_s,
        quantum_w=draw(st.sampled_from([0.0, 0.0, 100.0])),
        no_battery_w=no_battery,
    )


def check_feasible(x: PlanInputs, s: Schedule) -> None:
    """The plan's powers against the physical limits, from the inputs alone."""
    b = x.battery
    n = len(s.battery_w)
    dt_h = x.step_s / 3600.0
    load, pv = np.asarray(s.load_w), np.asarray(s.pv_w)
    assert n in (1, x.steps)
    assert np.isfinite(s.battery_w).all() and np.isfinite(s.grid_w).all() and np.isfinite(s.soc_pct_end).all()
    # Power limits.
    assert (s.battery_w <= b.max_discharge_w + SLACK_W).all(), s.battery_w
    assert (s.battery_w >= -b.max_charge_w - SLACK_W).all(), s.battery_w
    limit = np.inf if x.export_limit_w is None else x.export_limit_w
    assert (-s.grid_w <= limit + SLACK_W).all(), (s.grid_w, limit)
    scenario_plan = s.solver == "lp_scenarios"
    if scenario_plan and x.load_scenarios_w is not None and x.pv_scenarios_w is not None:
        # A scenario plan shows the scenarios' mean: its flows are bounded by the mean of each
        # scenario's bound (not the bound of the mean load and PV). Step 0's battery power is the
        # cap the controller's self-use keeps to (the most any scenario discharges), not a flow.
        excess = x.pv_scenarios_w - x.load_scenarios_w
        most_curtailed = np.maximum(0.0, excess - limit).mean(axis=0)[:n]
        surplus = np.maximum(0.0, excess).mean(axis=0)[:n]
        need = np.maximum(x.import_limit_w, -excess).mean(axis=0)[:n]
        flows = slice(1, None)
    else:
        most_curtailed = np.maximum(0.0, pv - load - limit)
        surplus = np.maximum(0.0, pv - load)
        need = np.maximum(x.import_limit_w, load - pv)
        flows = slice(None)
    # One meter: what comes in and goes out balances, but for PV curtailed beyond the export limit.
    curtailed = (pv + s.grid_w + s.battery_w - load)[flows]
    assert (curtailed >= -1e-2).all(), curtailed
    assert (curtailed <= most_curtailed[flows] + 1e-2).all(), (curtailed, limit)
    # Import within the supply (or what the house alone needs, which no plan can lower).
    assert (s.grid_w[flows] <= need[flows] + SLACK_W).all()
    if x.no_battery_w is not None and not scenario_plan:
        # Where part of the load is not the battery's, it covers the rest at most.
        cover = np.maximum(0.0, load - pv - x.no_battery_w[:n])
        assert (s.battery_w[x.no_battery_w[:n] > 0] <= cover[x.no_battery_w[:n] > 0] + SLACK_W).all()
    if not x.battery_may_export:
        # Only the PV surplus leaves the house.
        assert (-s.grid_w[flows] <= surplus[flows] + SLACK_W).all(), (s.grid_w, surplus)
    # The SoC the powers imply stays within the band (reserve to ceiling, widened to the SoC now).
    moved = np.where(s.battery_w < 0, -s.battery_w * b.charge_efficiency, -s.battery_w / b.discharge_efficiency)
    lo, hi = soc_limits.plan_band_wh(b, x.soc_pct)
    tol_wh = 1e-3 * max(1.0, b.capacity_wh / 1000.0)
    # With scenarios, step 0 of a self-use plan is the cap the controller's self-use keeps to
    # (the controller stops the battery at the band's edges itself): its flow is the cap's within
    # the band.
    capped = x.load_scenarios_w is not None and s.solver in ("lp", "lp_pinned", "self_use")
    if capped:
        first = min(max(b.wh(x.soc_pct) + moved[0] * dt_h, lo), hi)
        moved = moved.copy()
        moved[0] = (first - b.wh(x.soc_pct)) / dt_h
    if scenario_plan:
        soc_wh = b.wh(x.soc_pct) + moved[:1] * dt_h  # step 0 alone is one path (see below)
        if x.quantum_w > 0:  # rounded up, it may reach the band's edge within the step (see below)
            clipped = np.clip(soc_wh, lo, hi)
            assert np.abs(soc_wh - clipped).max() <= x.quantum_w * dt_h / b.discharge_efficiency + tol_wh
            soc_wh = clipped
    elif x.quantum_w > 0:
        # A step rounded up to the quantum may reach the band's edge early: the controller stops
        # the battery there. Never by more than the rounding added (a quantum a rounded step).
        soc_wh = np.empty(n)
        level = b.wh(x.soc_pct)
        stopped = 0.0
        for k in range(n):
            raw = level + moved[k] * dt_h
            level = min(max(raw, lo), hi)
            stopped += abs(raw - level)
            soc_wh[k] = level
        rounded = sum(intent in (Intent.CHARGE, Intent.DISCHARGE) for intent in s.intents)
        assert stopped <= rounded * x.quantum_w * dt_h / b.discharge_efficiency + tol_wh, stopped
    else:
        soc_wh = b.wh(x.soc_pct) + np.cumsum(moved * dt_h)
    reported = np.asarray(s.soc_pct_end) / 100.0 * b.capacity_wh
    assert reported.min() >= lo - tol_wh and reported.max() <= hi + tol_wh, (reported, lo, hi)
    # A scenario plan shows the scenarios' mean beyond step 0 (its SoC is the mean SoC, not the
    # SoC of the mean power): only step 0, the one the controller acts on, is one path.
    assert soc_wh.min() >= lo - tol_wh, (soc_wh, lo)
    assert soc_wh.max() <= hi + tol_wh, (soc_wh, hi)
    if not scenario_plan:
        # ... and the SoC the plan reports is the SoC its powers give.
        np.testing.assert_allclose(s.soc_pct_end, soc_wh / b.capacity_wh * 100.0, atol=1e-4)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan_inputs(), st.booleans(), st.booleans())
def test_plan_is_always_feasible_and_never_raises(x: PlanInputs, exact: bool, first_step_only: bool) -> None:
    schedule = plan(x, exact=exact, first_step_only=first_step_only)
    event(f"solver {schedule.solver}")
    check_feasible(x, schedule)


def _battery(**kw: float) -> BatteryModel:
    base = {
        "capacity_wh": 2400.0,
        "max_charge_w": 3000.0,
        "max_discharge_w": 3000.0,
        "charge_efficiency": 0.9,
        "discharge_efficiency": 0.9,
        "floor_pct": 0.0,
        "reserve_pct": 20.0,
        "ceiling_pct": 80.0,
    }
    base.update(kw)
    return BatteryModel(**base)


def _inputs(battery: BatteryModel, n: int, **kw: object) -> PlanInputs:
    base: dict[str, object] = {
        "start": FEBRUARY,
        "step_s": 3600,
        "soc_pct": 50.0,
        "import_price": np.full(n, 0.3),
        "export_price": np.full(n, 0.15),
        "pv_w": np.zeros(n),
        "load_w": np.full(n, 400.0),
        "battery": battery,
    }
    base.update(kw)
    return PlanInputs(**base)  # type: ignore[arg-type]


def test_a_battery_that_may_not_charge_plans_on_the_non_convex_path() -> None:
    # A BMS's 0 W charge limit under Economy 7 with a 15p export: the DP's level spacing was
    # a division by the charge step (ZeroDivisionError).
    x = _inputs(_battery(max_charge_w=0.0), 4, import_price=np.array([0.09, 0.09, 0.3, 0.3]))
    s = plan(x)
    check_feasible(x, s)
    assert s.solver == "lp_pinned" and (s.battery_w >= -SLACK_W).all()


@pytest.mark.parametrize("export_price", [0.05, 0.15])  # below the night's 0.09 and above it
def test_pv_beyond_the_export_limit_with_a_full_battery_is_curtailed_not_infeasible(export_price: float) -> None:
    # The battery at its ceiling, PV 4.6 kW over a 163 W house, export limited to 0: the LP's
    # balance was an equality, so this was "HiGHS returned Infeasible".
    x = _inputs(
        _battery(),
        3,
        soc_pct=80.0,
        import_price=np.array([0.09, 0.3, 0.3]),
        export_price=np.full(3, export_price),
        pv_w=np.full(3, 4618.0),
        load_w=np.full(3, 163.0),
        export_limit_w=0.0,
    )
    s = plan(x)
    check_feasible(x, s)
    assert (s.grid_w >= -SLACK_W).all()  # nothing exported: the limit is 0
    assert (s.battery_w >= -SLACK_W).all()  # and nothing charged: the battery is full


def test_the_scenario_plans_self_use_step_keeps_to_the_reserve() -> None:
    # At the reserve a self-use step cannot discharge: its battery power is the cap the controller's
    # self-use keeps to (the house's whole load; the controller stops at the reserve itself), and
    # the SoC the plan shows stays at the reserve (it showed the SoC of a discharge below it).
    x = _inputs(
        _battery(),
        4,
        soc_pct=20.0,
        load_scenarios_w=np.full((3, 4), 500.0),
        pv_scenarios_w=np.zeros((3, 4)),
    )
    for first_step_only in (False, True):
        s = plan(x, first_step_only=first_step_only)
        check_feasible(x, s)
        assert s.battery_w[0] == pytest.approx(500.0)
        assert s.soc_pct_end[0] == pytest.approx(20.0)


def test_rounding_to_the_quantum_keeps_the_soc_the_plan_shows() -> None:
    # A cheap step's grid charge rounded up from 136 W to 200 W: the SoC the plan showed was
    # the unrounded one, and the next step's discharge then went below it.
    x = _inputs(
        _battery(reserve_pct=0.0, max_charge_w=800.0, max_discharge_w=800.0),
        2,
        step_s=900,
        soc_pct=0.0,
        import_price=np.array([0.2047, 0.3802]),
        export_price=np.array([0.0624, 0.5596]),
        load_w=np.array([2198.4, 110.2]),
        battery_may_export=False,
        quantum_w=100.0,
    )
    s = plan(x, exact=False)
    check_feasible(x, s)
    assert s.battery_w[0] == pytest.approx(-200.0)
