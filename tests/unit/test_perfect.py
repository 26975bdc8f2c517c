"""The backtest's yardstick: the bill's perfect-foresight optimum, against an LP this project did not
write the solver for (scipy.optimize.linprog with its HiGHS dual simplex, built here from the
textbook storage model, not from ongrid's planner code)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.sparse import lil_matrix

from services.backtest.perfect import perfect_foresight
from shared.energy.battery import BatteryModel

START = datetime(2025, 1, 1, tzinfo=UTC)


def _linprog_bill(
    load: np.ndarray,
    pv: np.ndarray,
    imp: np.ndarray,
    exp: np.ndarray,
    b: BatteryModel,
    soc_pct: float,
    dt_h: float,
    battery_may_export: bool,
) -> float:
    """min sum(imp * i - exp * e) dt over c, d, i, e, s with the usual storage constraints."""
    n = len(load)
    # Columns: c[0..n), d[n..2n), i[2n..3n), e[3n..4n), s[4n..5n)
    # Costs per W-step are ~1e-5 currency: scaled to ~1 so the solver's 1e-7 optimality tolerance
    # does not stop it short (unscaled, HiGHS declares optimal a bill 3% above the true one).
    scale = 1e5 / dt_h
    cost = np.concatenate([np.zeros(2 * n), imp * dt_h / 1000, -exp * dt_h / 1000, np.zeros(n)]) * scale
    a = lil_matrix((2 * n, 5 * n))
    rhs = np.zeros(2 * n)
    s0 = b.wh(soc_pct)
    for t in range(n):
        # grid + battery meets the net load: i - e + d - c = load - pv
        a[t, 2 * n + t], a[t, 3 * n + t], a[t, n + t], a[t, t] = 1, -1, 1, -1
        rhs[t] = load[t] - pv[t]
        # s[t] = s[t-1] + dt (eta_c c - d / eta_d)
        a[n + t, 4 * n + t] = 1
        a[n + t, t] = -b.charge_efficiency * dt_h
        a[n + t, n + t] = dt_h / b.discharge_efficiency
        if t:
            a[n + t, 4 * n + t - 1] = -1
        else:
            rhs[n] = s0
    lo_s, hi_s = min(b.wh(b.reserve_pct), s0), max(b.wh(b.ceiling_pct), s0)
    export_cap = [None] * n if battery_may_export else [max(0.0, pv[t] - load[t]) for t in range(n)]
    bounds = (
        [(0, b.max_charge_w)] * n
        + [(0, b.max_discharge_w)] * n
        + [(0, None)] * n
        + [(0, cap) for cap in export_cap]
        + [(lo_s, hi_s)] * n
    )
    out = linprog(cost, A_eq=a.tocsr(), b_eq=rhs, bounds=bounds, method="highs-ds")
    assert out.status == 0, out.message
    return float(out.fun) / scale


def _case(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    load = rng.uniform(100, 3000, n)
    pv = np.clip(rng.normal(800, 1500, n), 0, None)
    imp = rng.choice([0.09, 0.30, 0.22, 0.15], n)
    exp = np.minimum(imp, rng.choice([0.0, 0.05, 0.15], n))  # export never above import: convex
    return load, pv, imp, exp


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("battery_may_export", [True, False])
def test_convex_dp_equals_an_independent_lp(seed: int, battery_may_export: bool) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    load, pv, imp, exp = _case(rng, n)
    b = BatteryModel(
        capacity_wh=float(rng.uniform(2000, 15000)),
        max_charge_w=float(rng.uniform(500, 5000)),
        max_discharge_w=float(rng.uniform(500, 5000)),
        charge_efficiency=float(rng.uniform(0.85, 1.0)),
        discharge_efficiency=float(rng.uniform(0.85, 1.0)),
        floor_pct=5,
        reserve_pct=float(rng.uniform(5, 30)),
        ceiling_pct=float(rng.uniform(80, 100)),
    )
    soc = float(rng.uniform(0, 100))
    step_s = int(rng.choice([60, 300, 1800, 3600]))
    dt_h = step_s / 3600
    ours = perfect_foresight(
        START, step_s, load, pv, imp, exp, b, soc, battery_may_export=battery_may_export
    )
    assert ours.method == "convex_dp"
    reference = _linprog_bill(load, pv, imp, exp, b, soc, dt_h, battery_may_export)
    assert ours.bill == pytest.approx(reference, abs=1e-7, rel=1e-7)
    # The schedule is physical and its own bill is the one reported.
    bw = ours.battery_w
    assert np.all(bw <= b.max_discharge_w + 1e-6) and np.all(bw >= -b.max_charge_w - 1e-6)
    moved = np.where(bw < 0, -bw * b.charge_efficiency, -bw / b.discharge_efficiency) * dt_h
    soc_wh = b.wh(soc) + np.cumsum(moved)
    assert soc_wh.min() >= min(b.wh(b.reserve_pct), b.wh(soc)) - 1e-6
    assert soc_wh.max() <= max(b.wh(b.ceiling_pct), b.wh(soc)) + 1e-6
    grid = load - pv - bw
    if not battery_may_export:
        assert np.all(-grid <= np.maximum(0.0, pv - load) + 1e-6)
    bill = float(np.sum(np.where(grid > 0, grid * imp, grid * exp)) * dt_h / 1000)
    assert bill == pytest.approx(ours.bill, abs=1e-7)


def test_non_convex_prices_fall_back_to_the_planner_model() -> None:
    # Export above import at night (Economy 7 9p vs a 15p export): no longer a convex path.
    n = 48
    load = np.full(n, 400.0)
    pv = np.zeros(n)
    imp = np.where(np.arange(n) < 14, 0.09, 0.30)
    exp = np.full(n, 0.15)
    b = BatteryModel(capacity_wh=5000, max_charge_w=2000, max_discharge_w=2000)
    free = perfect_foresight(START, 1800, load, pv, imp, exp, b, 50.0)
    assert free.method in ("lp", "lp_pinned")
    # Forbidding battery export takes the night arbitrage away, so the bill cannot be lower.
    kept = perfect_foresight(START, 1800, load, pv, imp, exp, b, 50.0, battery_may_export=False)
    assert kept.bill >= free.bill - 1e-9
    assert np.all(load - pv - kept.battery_w >= -1e-6)  # nothing from the battery leaves the house
