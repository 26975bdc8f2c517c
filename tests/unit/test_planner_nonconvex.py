"""The non-convex plan (import cheaper than export, negative prices): the DP's directions and the
pinned LP against a MILP with a direction binary on every step, and the DP against brute force."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest

from services.dispatcher.core import direction_dp
from services.dispatcher.core.direction_dp import dp_path
from services.dispatcher.core.planner import PlanInputs, Schedule, plan, reference_milp
from shared.energy import soc_limits
from shared.energy.battery import BatteryModel

START = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


def _case(rng: np.random.Generator, n: int) -> PlanInputs:
    """A random non-convex plan: Economy-7-like nights under a flat export above them, or
    Agile-like prices with negative hours, or prices drawn independently; random battery, SoC, step
    length, costs, export limit, ``battery_may_export`` and the battery's power now."""
    battery = BatteryModel(
        capacity_wh=float(rng.uniform(3000, 15000)),
        max_charge_w=float(rng.uniform(1000, 5000)),
        max_discharge_w=float(rng.uniform(1000, 5000)),
        charge_efficiency=float(rng.uniform(0.85, 1.0)),
        discharge_efficiency=float(rng.uniform(0.85, 1.0)),
        floor_pct=5.0,
        reserve_pct=float(rng.uniform(5, 30)),
        ceiling_pct=float(rng.uniform(80, 100)),
    )
    kind = rng.integers(3)
    if kind == 0:
        imp, exp = rng.uniform(-0.05, 0.4, n), rng.uniform(0.0, 0.3, n)
    elif kind == 1:
        night = (np.arange(n) % 48) < 14
        imp = np.where(night, rng.uniform(0.05, 0.12), rng.uniform(0.2, 0.4))
        exp = np.full(n, rng.uniform(0.1, 0.2))
    else:
        imp = 0.15 + 0.1 * np.sin(np.arange(n) / 4 + rng.uniform(0, 6)) + rng.normal(0, 0.05, n)
        exp = imp * rng.uniform(0.4, 1.3)
    return PlanInputs(
        start=START,
        step_s=int(rng.choice([900, 1800, 3600])),
        soc_pct=float(rng.uniform(0, 100)),
        import_price=imp,
        export_price=exp,
        pv_w=np.clip(rng.normal(1000, 1500, n), 0, None),
        load_w=rng.uniform(200, 3000, n),
        battery=battery,
        export_limit_w=float(rng.uniform(2000, 4000)) if rng.random() < 0.3 else None,
        battery_may_export=bool(rng.random() < 0.7),
        switch_cost=float(rng.choice([0.0, 0.002, 0.01])),
        cycle_cost_per_kwh=float(rng.choice([0.0, 0.005, 0.02])),
        battery_power_now_w=float(rng.uniform(-2000, 2000)),
    )


def _check_feasible(x: PlanInputs, s: Schedule) -> None:
    """The real constraints, from the inputs alone (not from the planner's model)."""
    b = x.battery
    dt_h = x.step_s / 3600.0
    assert np.all(s.battery_w <= b.max_discharge_w + 1e-6) and np.all(s.battery_w >= -b.max_charge_w - 1e-6)
    # Balanced, but for PV curtailed beyond the export limit (never exported beyond it).
    curtailed = x.pv_w + s.grid_w + s.battery_w - x.load_w
    limit = np.inf if x.export_limit_w is None else x.export_limit_w
    assert curtailed.min() >= -1e-3 and np.all(curtailed <= np.maximum(0.0, x.pv_w - x.load_w - limit) + 1e-3)
    assert np.all(-s.grid_w <= limit + 1e-3)
    moved = np.where(s.battery_w < 0, -s.battery_w * b.charge_efficiency, -s.battery_w / b.discharge_efficiency)
    soc_wh = b.wh(x.soc_pct) + np.cumsum(moved * dt_h)
    lo, hi = soc_limits.plan_band_wh(b, x.soc_pct)
    assert soc_wh.min() >= lo - 1e-3 and soc_wh.max() <= hi + 1e-3
    np.testing.assert_allclose(s.soc_pct_end, soc_wh / b.capacity_wh * 100.0, atol=1e-6)
    assert np.all(s.grid_w <= np.maximum(x.import_limit_w, x.load_w - x.pv_w) + 1e-3)
    if not x.battery_may_export:
        assert np.all(-s.grid_w <= np.maximum(0.0, x.pv_w - x.load_w) + 1e-3)


@pytest.mark.parametrize("seed", range(24))
def test_non_convex_plan_within_half_a_percent_of_the_milp_reference(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    x = _case(rng, int(rng.integers(12, 30)))
    ours = plan(x)
    ref = reference_milp(x)
    scale = max(abs(ref.objective), 1.0)
    assert ours.objective - ref.objective <= 0.005 * scale
    assert ours.objective >= ref.objective - 1e-6 * scale  # a lower objective would be infeasible
    if np.any(x.import_price < x.export_price) or np.any(np.minimum(x.import_price, x.export_price) < 0):
        assert ours.solver == "lp_pinned"  # picked automatically
    _check_feasible(x, ours)
    # Its objective is the LP's: bill, wear, switching and terminal value recomputed from the plan.
    b, dt_h = x.battery, x.step_s / 3600.0
    moves = np.diff(np.concatenate([[x.battery_power_now_w], ours.battery_w]))
    terminal = max(0.0, x.terminal_value_factor * b.discharge_efficiency * float(x.import_price.min()))
    recomputed = (
        ours.cost
        + x.cycle_cost_per_kwh / 2.0 * float(np.abs(ours.battery_w).sum()) * dt_h / 1000.0
        + x.switch_cost / 1000.0 * float(np.abs(moves).sum())
        - terminal * b.wh(float(ours.soc_pct_end[-1])) / 1000.0
    )
    assert recomputed == pytest.approx(ours.objective, abs=1e-6 * scale)


def test_the_fast_path_is_still_a_feasible_plan_no_worse_than_the_dps() -> None:
    rng = np.random.default_rng(7)
    x = _case(rng, 24)
    fast = plan(x, exact=False)
    full = plan(x)
    _check_feasible(x, fast)
    assert full.objective <= fast.objective + 1e-9


def _brute_force(x: PlanInputs, levels: np.ndarray, moves: np.ndarray, power: np.ndarray) -> float:
    """Every path of levels, priced step by step: what the DP must find."""
    b, dt_h, n = x.battery, x.step_s / 3600.0, x.steps
    s0 = b.wh(x.soc_pct)
    start = int(np.argmin(np.abs(levels - s0)))
    assert levels[start] == pytest.approx(s0)
    net = x.load_w - x.pv_w
    sw = x.switch_cost / 1000.0
    best = np.inf
    for path in itertools.product(range(len(moves)), repeat=n):
        level, last, total = start, x.battery_power_now_w, 0.0
        for t, d in enumerate(path):
            level += int(moves[d])
            if not 0 <= level < len(levels):
                break
            g = net[t] - power[d]
            total += (x.import_price[t] if g > 0 else x.export_price[t]) * g * dt_h / 1000.0
            total += x.cycle_cost_per_kwh / 2.0 * abs(power[d]) * dt_h / 1000.0 + sw * abs(power[d] - last)
            last = power[d]
        else:
            best = min(best, total)
    return best


@pytest.mark.parametrize("switch_cost", [0.0, 0.01])
def test_the_dp_finds_the_cheapest_path_over_its_levels(monkeypatch: pytest.MonkeyPatch, switch_cost: float) -> None:
    # A band of 8 levels with the start on one, 3 levels per full charge: 4 steps, every path tried.
    monkeypatch.setattr(direction_dp, "CHARGE_LEVELS", 3)
    b = BatteryModel(
        capacity_wh=4000,
        max_charge_w=1500,
        max_discharge_w=1500,
        charge_efficiency=1.0,
        discharge_efficiency=1.0,
        floor_pct=0.0,
        reserve_pct=0.0,
        ceiling_pct=100.0,
    )
    x = PlanInputs(
        start=START,
        step_s=3600,
        soc_pct=25.0,  # 1000 Wh: level 2 of 0, 500, ..., 4000
        import_price=[0.05, 0.30, 0.02, 0.40],
        export_price=[0.15, 0.10, 0.20, 0.05],
        pv_w=[0.0, 2000.0, 0.0, 0.0],
        load_w=[300.0, 200.0, 800.0, 1200.0],
        battery=b,
        switch_cost=switch_cost,
        cycle_cost_per_kwh=0.01,
        terminal_value_factor=0.0,
        battery_power_now_w=-700.0,
    )
    h, levels, moves = direction_dp._grid(b, x.soc_pct, 1.0)
    assert h == pytest.approx(500.0) and len(levels) == 9 and list(moves) == [3, 2, 1, 0, -1, -2, -3]
    power = direction_dp._power(moves * h, b, 1.0)
    path = dp_path(
        battery=b,
        soc_pct=x.soc_pct,
        step_s=x.step_s,
        net_w=x.load_w - x.pv_w,
        import_price=x.import_price,
        export_price=x.export_price,
        import_max_w=np.full(4, 1e9),
        export_max_w=np.full(4, 1e9),
        cycle_cost_per_kwh=x.cycle_cost_per_kwh,
        switch_cost=switch_cost,
        terminal_per_wh=0.0,
        battery_power_now_w=x.battery_power_now_w,
    )
    assert path.cost == pytest.approx(_brute_force(x, levels, moves, power), abs=1e-9)
