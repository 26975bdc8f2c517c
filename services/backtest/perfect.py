"""The yardstick: the bill's optimum with perfect foresight over the whole data, in one optimisation.

Per data step ``t`` the battery moves its stored energy by ``x`` Wh (charge ``c = x / (eta_c dt)``
when ``x > 0``, discharge ``d = -x eta_d / dt`` when ``x < 0``); the meter then carries
``g = net - d + c`` and the step costs ``import_price * g`` when ``g > 0``, ``export_price * g``
when not. The stored energy stays within ``[min(reserve, start), max(ceiling, start)]``, the same
band the dispatcher keeps. Only the bill counts: no wear, no switching cost, no value for what is
left at the end (those are reported beside the bill, never mixed into it).

Where ``0 <= export price <= import price`` (every UK export tariff against its import tariff) the
cost of a step is a convex, piecewise-linear function of ``x`` with at most three pieces, so the
whole-period problem is a convex resource path solved exactly by dynamic programming on convex
piecewise-linear value functions: ``V_t = (V_{t+1} inf-convolved with the step cost)`` restricted
to the band, which is a merge of sorted slope lists (the slopes are prices times efficiencies, so
a value function has only a handful of pieces). One backward pass records, for each piece of each
step's cost, the level the optimum fills to; one forward pass reads the decisions off. It is the
exact optimum of the same linear program (tests/unit/test_perfect.py checks it against
``scipy.optimize.linprog`` and against HiGHS), in O(steps) time: a year of 1-minute data is
seconds, where HiGHS's simplex needs ~6 s for 30-minute data and minutes for 1-minute data.

Other cases (a price below zero, export paying more than import in some step, an export limit)
fall back to the planner's own model over the whole period (``plan`` with no wear, switching or
terminal value): exact when it reports ``lp``; when it reports ``lp_pinned`` (directions from the
planner's DP over SoC levels, then the LP), an upper bound, measured within 0.11 % of a MILP with a
binary on every step on 48 h problems (docs/dispatcher.md, "Exactness").
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from services.dispatcher.core.planner import PlanInputs, plan
from shared.energy import soc_limits
from shared.energy.battery import BatteryModel

__all__ = ["PerfectResult", "perfect_foresight"]

_EPS = 1e-12


@dataclass(frozen=True, eq=False)
class PerfectResult:
    battery_w: np.ndarray  # per data step, discharge +
    bill: float  # currency: what the meter would charge, nothing else
    method: str  # "convex_dp" (exact), "lp" (exact), "lp_pinned" (upper bound)


def _pieces(
    net: float, p_imp: float, p_exp: float, xlo: float, xhi: float, eta_c: float, eta_d: float, dt_h: float
) -> tuple[float, list[float], list[float], list[float]]:
    """The step cost in ``x`` on ``[xlo, xhi]``: (value at xlo, piece starts, lengths, slopes).

    Slopes are currency per Wh moved: discharging covers the load (import price times eta_d),
    then exports (export price times eta_d); charging soaks up surplus (export price over eta_c),
    then imports (import price over eta_c). Ascending whenever ``0 <= export <= import``.
    """
    if net > 0:
        cut = -net * dt_h / eta_d  # discharging this much covers the net load exactly
        ends = (cut, 0.0, xhi)
        slopes_all = (p_exp * eta_d / 1000.0, p_imp * eta_d / 1000.0, p_imp / eta_c / 1000.0)
    else:
        cut = -net * eta_c * dt_h  # charging this much soaks up the surplus exactly
        ends = (0.0, cut, xhi)
        slopes_all = (p_exp * eta_d / 1000.0, p_exp / eta_c / 1000.0, p_imp / eta_c / 1000.0)
    starts: list[float] = []
    lengths: list[float] = []
    slopes: list[float] = []
    left = xlo
    for end, slope in zip(ends, slopes_all, strict=True):
        right = end if end < xhi else xhi
        if right > left + _EPS:
            starts.append(left)
            lengths.append(right - left)
            slopes.append(slope)
            left = right
    if not lengths:  # xlo == xhi: no room at all
        starts, lengths, slopes = [xlo], [0.0], [0.0]
    g = net + xlo / (eta_c * dt_h) if xlo > 0 else net + xlo * eta_d / dt_h
    v0 = (p_imp if g > 0 else p_exp) * g * dt_h / 1000.0
    return v0, starts, lengths, slopes


def _convex_dp(
    net: np.ndarray,
    imp: np.ndarray,
    exp: np.ndarray,
    xlo: np.ndarray,
    xhi: np.ndarray,
    lo: float,
    hi: float,
    s0: float,
    eta_c: float,
    eta_d: float,
    dt_h: float,
) -> tuple[np.ndarray, float]:
    """Optimal energy moves ``x`` (Wh per step) and the bill, for the convex case."""
    n = len(net)
    eps = _EPS
    # V_{t+1} on [a, a + sum(lengths)] = [lo, hi]: value at a, pieces with ascending slopes.
    a, v0 = lo, 0.0
    lengths: list[float] = [hi - lo]
    slopes: list[float] = [0.0]
    # Per step, backwards, four floats per cost piece (start, length, fill from, fill to), padded
    # to three pieces: flat, so a year of minutes costs 50 MB, not a list of lists per step.
    record = array("d")
    netl, impl, expl, xlol, xhil = net.tolist(), imp.tolist(), exp.tolist(), xlo.tolist(), xhi.tolist()
    for t in range(n - 1, -1, -1):
        hv0, hstarts, hlen, hslope = _pieces(netl[t], impl[t], expl[t], xlol[t], xhil[t], eta_c, eta_d, dt_h)
        # For each cost piece, the levels where V's slope meets minus the piece's slope: the
        # optimum fills that piece up to there.
        nv = len(slopes)
        for j in range(3):
            if j >= len(hslope):
                record.extend((0.0, 0.0, 0.0, 0.0))
                continue
            sigma = hslope[j]
            y = a
            i = 0
            while i < nv and slopes[i] < -sigma - eps:
                y += lengths[i]
                i += 1
            y_lo = y
            while i < nv and slopes[i] <= -sigma + eps:
                y += lengths[i]
                i += 1
            record.extend((hstarts[j], hlen[j], y_lo, y))
        # W(s) = min over x of h(x) + V(s + x) = V inf-convolved with k(z) = h(-z): the slope
        # lists merge. W starts at a - max(x) with value V(a) + h(max(x)).
        h_total = hv0
        for ln, sl in zip(hlen, hslope, strict=True):
            h_total += ln * sl
        pos = a - (hstarts[-1] + hlen[-1])
        value = v0 + h_total
        nk = len(hslope)
        i = 0
        j = nk - 1
        new_len: list[float] = []
        new_slope: list[float] = []
        # Walk the merge, keeping only what lies within [lo, hi].
        while i < nv or j >= 0:
            if j < 0 or (i < nv and slopes[i] <= -hslope[j]):
                ln, sl = lengths[i], slopes[i]
                i += 1
            else:
                ln, sl = hlen[j], -hslope[j]
                j -= 1
            end = pos + ln
            if end <= lo:
                value += sl * ln
            elif pos < hi:
                left = pos if pos > lo else lo
                right = end if end < hi else hi
                if not new_len:
                    value += sl * (left - pos)
                if right - left > eps:
                    if new_slope and new_slope[-1] + eps >= sl:
                        new_len[-1] += right - left
                    else:
                        new_len.append(right - left)
                        new_slope.append(sl)
            else:
                break
            pos = end
        a, v0 = lo, value
        if new_len:
            lengths, slopes = new_len, new_slope
        else:
            lengths, slopes = [hi - lo], [0.0]
    bill = v0
    pos = a
    for ln, sl in zip(lengths, slopes, strict=True):
        bill += sl * min(ln, max(0.0, s0 - pos))
        pos += ln
    # Forward: fill each cost piece up to its level (levels fall piece by piece, so at most one
    # piece is part-filled); a tie takes the move nearest to doing nothing.
    moves = np.zeros(n)
    s = s0
    for t in range(n):
        base = 12 * (n - 1 - t)
        x = record[base]
        for b_j, ln, y_lo, y_hi in (record[base : base + 4], record[base + 4 : base + 8], record[base + 8 : base + 12]):
            nearest = 0.0 if b_j < 0.0 < b_j + ln else (b_j if b_j >= 0.0 else b_j + ln)
            y = s + nearest
            y = y_lo if y < y_lo else (y_hi if y > y_hi else y)
            fill = y - s - b_j
            x += 0.0 if fill < 0.0 else (ln if fill > ln else fill)
        x = min(max(x, lo - s), hi - s)
        moves[t] = x
        s += x
    return moves, bill


def perfect_foresight(
    start: datetime,
    step_s: int,
    load_w: np.ndarray,
    pv_w: np.ndarray,
    import_price: np.ndarray,
    export_price: np.ndarray,
    battery: BatteryModel,
    soc_pct: float,
    *,
    export_limit_w: float | None = None,
    import_limit_w: float = 23_000.0,
    battery_may_export: bool = True,
) -> PerfectResult:
    """The bill's optimum over the whole data (see the module docstring)."""
    b = battery
    dt_h = step_s / 3600.0
    net = np.asarray(load_w, dtype=float) - np.asarray(pv_w, dtype=float)
    imp = np.asarray(import_price, dtype=float)
    exp = np.asarray(export_price, dtype=float)
    convex = bool(np.all(exp >= 0) and np.all(exp <= imp)) and export_limit_w is None
    if convex:
        s0 = b.wh(soc_pct)
        lo, hi = soc_limits.plan_band_wh(b, soc_pct)
        discharge_max = np.full(len(net), b.max_discharge_w)
        if not battery_may_export:
            # Battery energy may cover the house but never leave it.
            discharge_max = np.minimum(discharge_max, np.maximum(net, 0.0))
        xlo = -discharge_max * dt_h / b.discharge_efficiency
        xhi = np.full(len(net), b.max_charge_w * b.charge_efficiency * dt_h)
        moves, bill = _convex_dp(
            net, imp, exp, xlo, xhi, lo, hi, s0, b.charge_efficiency, b.discharge_efficiency, dt_h
        )
        battery_w = np.where(
            moves > 0, -moves / (b.charge_efficiency * dt_h), -moves * b.discharge_efficiency / dt_h
        )
        return PerfectResult(battery_w, bill, "convex_dp")
    inputs = PlanInputs(
        start=start,
        step_s=step_s,
        soc_pct=soc_pct,
        import_price=imp,
        export_price=exp,
        pv_w=pv_w,
        load_w=load_w,
        battery=b,
        switch_cost=0.0,
        cycle_cost_per_kwh=0.0,
        terminal_value_factor=0.0,
        export_limit_w=export_limit_w,
        import_limit_w=import_limit_w,
        battery_may_export=battery_may_export,
    )
    schedule = plan(inputs, exact=False, time_limit_s=600.0)
    return PerfectResult(schedule.battery_w, schedule.cost, schedule.solver)
