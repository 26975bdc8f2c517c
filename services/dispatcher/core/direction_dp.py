"""Directions for the non-convex plan: an exact dynamic programme over a grid of SoC levels.

Where import is cheaper than export (Economy 7's night against a 15p export) or a price is below
zero, the LP relaxation imports and exports at once, or charges and discharges at once: its answer
is not a plan. A dynamic programme does not care: it prices each step with the true one-meter cost
(import price on what comes in, export price on what goes out), one battery direction per step,
and finds the cheapest path exactly - over a grid of stored-energy levels. The planner then fixes
each step's directions to the DP's and solves the LP: with directions fixed the problem is convex
again, so the LP finds the exact powers for those directions, and its optimum is never worse than
the DP's path (which is one of its feasible points, priced the same way).

The DP prices everything the LP does: the bill, wear on what goes in and out, the switching cost
``switch_cost`` per kW of change in battery power (so the state is the level and the last step's
power; the best next move for every last power is a distance transform, two cumulative minima
along the sorted powers) and the value of what is left at the end. Its constraints are the LP's:
the power limits, the SoC band, the import limit, the export limit (PV it cannot absorb is
curtailed, as the LP's bound allows) and ``battery_may_export``.

Grid. Levels are ``s0 + k h`` within the band (so the start is a level and every move is a whole
number of steps ``h``); ``h`` is the full-power charge of one step over ``CHARGE_LEVELS``, so a
full-power charge is on the grid exactly, and no coarser than the band over ``MAX_LEVELS``. What
the grid cannot represent (a discharge that meets the load exactly, the last part-step to the
ceiling) the LP restores once the directions are fixed; what is left is a direction that only a
finer grid would have chosen differently. tests/unit/test_planner.py measures that against a MILP
with a binary on every step (within 0.5 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.energy import soc_limits
from shared.energy.battery import BatteryModel

__all__ = ["CHARGE_LEVELS", "MAX_LEVELS", "DpPath", "dp_path"]

# Levels per full-power charge step: a move is a multiple of (full charge / CHARGE_LEVELS).
CHARGE_LEVELS = 32
# At most this many levels across the band (a very small battery against a big inverter).
MAX_LEVELS = 400
# Currency per W of a step's grid flow beyond its limit: a move the LP would refuse is priced out
# rather than forbidden, so a grid that just misses the one feasible move still gives a path.
_OVER_LIMIT = 1.0


@dataclass(frozen=True)
class DpPath:
    """The DP's path: per step the battery power (discharge +) and the grid flow (import +)."""

    battery_w: np.ndarray
    grid_w: np.ndarray
    cost: float  # the DP's own objective (currency), the same terms as the LP's


def _grid(battery: BatteryModel, soc_pct: float, dt_h: float) -> tuple[float, np.ndarray, np.ndarray]:
    """(step h in Wh, levels in Wh from the band's bottom to its top, moves in levels)."""
    b = battery
    lo, hi = soc_limits.plan_band_wh(b, soc_pct)
    up = b.max_charge_w * b.charge_efficiency * dt_h
    down = b.max_discharge_w * dt_h / b.discharge_efficiency
    # Of the spacings that put CHARGE_LEVELS to 1.25 x CHARGE_LEVELS levels in a full charge, the
    # one whose whole levels come nearest a full discharge too (a discharge cut 5 % short
    # undervalues every kWh the battery could sell).
    # A battery that may not charge (or not discharge) now, e.g. a BMS's limit of 0 W when cold or
    # full: the spacing follows the one direction it has (or the band alone when it has neither).
    if up > 0 and down > 0:
        k = min(
            range(CHARGE_LEVELS, CHARGE_LEVELS + CHARGE_LEVELS // 4 + 1), key=lambda k: (down * k / up) % 1.0 * up / k
        )
    else:
        k = CHARGE_LEVELS
    target = max((up if up > 0 else down) / k, (hi - lo) / MAX_LEVELS, 1e-6)
    count = max(1, int(np.ceil((hi - lo) / target - 1e-9)))
    h = max((hi - lo) / count, 1e-9)
    levels = np.linspace(lo, hi, count + 1)
    # Largest charge first, one level apart: the powers then ascend, as the transform wants them.
    moves = np.arange(int(np.floor(up / h + 1e-9)), -int(np.floor(down / h + 1e-9)) - 1, -1)
    return h, levels, moves


def _power(delta_wh: np.ndarray, b: BatteryModel, dt_h: float) -> np.ndarray:
    """Battery power (AC side, discharge +) that moves the stored energy by ``delta_wh`` in a step."""
    return np.where(delta_wh > 0, -delta_wh / (b.charge_efficiency * dt_h), -delta_wh * b.discharge_efficiency / dt_h)


def dp_path(
    *,
    battery: BatteryModel,
    soc_pct: float,
    step_s: int,
    net_w: np.ndarray,
    import_price: np.ndarray,
    export_price: np.ndarray,
    import_max_w: np.ndarray,
    export_max_w: np.ndarray,
    cycle_cost_per_kwh: float,
    switch_cost: float,
    terminal_per_wh: float,
    battery_power_now_w: float,
) -> DpPath:
    """The cheapest path over the level grid (see the module docstring).

    ``import_max_w``/``export_max_w`` are the LP's bounds on the grid flows per step; costs are the
    LP's, in currency: per kWh of import/export, ``cycle_cost_per_kwh / 2`` per kWh in or out,
    ``switch_cost`` per kW of change in battery power, ``terminal_per_wh`` credited per Wh left.
    """
    b = battery
    dt_h = step_s / 3600.0
    h, levels, moves = _grid(b, soc_pct, dt_h)
    power = _power(moves * h, b, dt_h)
    sw = switch_cost / 1000.0  # currency per W of change

    def money(p: np.ndarray) -> np.ndarray:
        """Bill, wear and over-limit penalty of battery power ``p[t, k]`` in step t."""
        grid = net_w[:, None] - p
        bill = np.where(grid > 0, grid * import_price[:, None], grid * export_price[:, None]) * dt_h / 1000.0
        wear = cycle_cost_per_kwh / 2.0 * dt_h / 1000.0 * np.abs(p)
        over = np.maximum(0.0, grid - import_max_w[:, None]) + np.maximum(0.0, -grid - export_max_w[:, None])
        return np.asarray(bill + wear + _OVER_LIMIT * over)

    every = money(np.broadcast_to(power, (len(net_w), len(power))))  # (steps, moves), alike from every level
    # Step 0 starts from the SoC now, which need not be a level: to every level within reach.
    s0 = b.wh(soc_pct)
    p0 = _power(levels - s0, b, dt_h)
    first = money(np.broadcast_to(p0, (len(net_w), len(p0))))[0] + sw * np.abs(p0 - battery_power_now_w)
    reach = (p0 >= -b.max_charge_w - 1e-6) & (p0 <= b.max_discharge_w + 1e-6)
    if not np.any(reach):
        # Not even the nearest level is within one step's power (a band narrower than h away):
        # stay nearest; the LP gets the step right once its direction is fixed.
        reach = np.arange(len(levels)) == int(np.argmin(np.abs(levels - s0)))
    first = np.where(reach, first, np.inf)
    end = -terminal_per_wh * levels
    if sw == 0.0:
        battery_w = _without_switching(every, end, moves, power, first, p0)
    else:
        battery_w = _with_switching(every, end, moves, power, first, p0, sw, battery_power_now_w)
    # The DP's own objective, priced as the LP prices it.
    total = float(np.sum(money(battery_w[:, None]))) + sw * abs(float(battery_w[0]) - battery_power_now_w)
    total += sw * float(np.sum(np.abs(np.diff(battery_w))))
    moved = np.where(battery_w < 0, -battery_w * b.charge_efficiency, -battery_w / b.discharge_efficiency) * dt_h
    total -= terminal_per_wh * (s0 + float(np.sum(moved)))
    return DpPath(battery_w=battery_w, grid_w=net_w - battery_w, cost=total)


def _shifted(padded: np.ndarray, moves: np.ndarray, size: int) -> np.ndarray:
    """A view ``a[d, i]`` of the value at the level move ``d`` reaches from level ``i``.

    ``padded[..., j]`` holds level ``j - bottom`` (``bottom`` columns of inf below the band, ``top``
    above); moves run from ``top`` down to ``-bottom`` one level apart, so the view is strided: no
    copy, no gather.
    """
    top, bottom, count = int(moves[0]), -int(moves[-1]), len(moves)
    *lead, cols = padded.strides
    rows = lead[0] if lead else 0
    return np.lib.stride_tricks.as_strided(
        padded[..., bottom + top :], shape=(count, size), strides=(rows - cols, cols), writeable=False
    )


def _without_switching(
    every: np.ndarray, end: np.ndarray, moves: np.ndarray, power: np.ndarray, first: np.ndarray, p0: np.ndarray
) -> np.ndarray:
    """Battery powers of the cheapest path when power changes cost nothing: the state is the level
    alone, and the best move per level and step is all the forward pass needs (a year of steps fits)."""
    n, size = len(every), len(end)
    top, bottom = int(moves[0]), -int(moves[-1])
    padded = np.full(bottom + size + top, np.inf)
    padded[bottom : bottom + size] = end
    columns = np.arange(size)
    # One byte a level and step while the moves fit (a year of minutes at 400 levels: 210 MB).
    choices = np.zeros((n, size), dtype=np.int8 if len(moves) < 128 else np.int16)
    for t in range(n - 1, 0, -1):
        a = every[t][:, None] + _shifted(padded, moves, size)
        choices[t] = np.argmin(a, axis=0)
        padded[bottom : bottom + size] = a[choices[t], columns]
    level = int(np.argmin(first + padded[bottom : bottom + size]))
    out = np.zeros(n)
    out[0] = p0[level]
    for t in range(1, n):
        d = int(choices[t, level])
        out[t] = power[d]
        level += int(moves[d])
    return out


def _with_switching(
    every: np.ndarray,
    end: np.ndarray,
    moves: np.ndarray,
    power: np.ndarray,
    first: np.ndarray,
    p0: np.ndarray,
    sw: float,
    power_now_w: float,
) -> np.ndarray:
    """Battery powers of the cheapest path with ``sw`` currency per W of change in power: the state
    is the level and the last move. float32 keeps the tables small and the sweeps quick; the path
    only chooses directions, and its value is recomputed in float64."""
    n, size, count = len(every), len(end), len(moves)
    top, bottom = int(moves[0]), -int(moves[-1])
    column = (sw * power)[:, None].astype(np.float32)
    costs = every.astype(np.float32)

    def transform(a: np.ndarray) -> np.ndarray:
        """out[q, i] = min over d of a[d, i] + sw |power[d] - power[q]|: the distance transform along
        the ascending powers, as two prefix minima (Hillis-Steele: log2(moves) whole-array passes,
        three times quicker than numpy's row-by-row accumulate)."""
        forward = _prefix_min(a - column) + column
        backward = _prefix_min((a + column)[::-1])[::-1] - column
        return np.minimum(forward, backward)

    # padded[q, bottom + i]: the best cost from level i at a step's start, the last move being q.
    padded = np.full((count, bottom + size + top), np.inf, dtype=np.float32)
    padded[:, bottom : bottom + size] = end
    tables = np.zeros((n, count, size), dtype=np.float32)  # a[d, i] per step, for the forward pass
    for t in range(n - 1, 0, -1):
        a = costs[t][:, None] + _shifted(padded, moves, size)
        tables[t] = a
        padded[:, bottom : bottom + size] = transform(a)
    if n > 1:
        # From each level after a first step of power p0 (not one of the moves' powers).
        onward = np.min(tables[1] + sw * np.abs(power[:, None] - p0[None, :]), axis=0)
    else:
        onward = end
    level = int(np.argmin(first + onward))
    out = np.zeros(n)
    out[0] = p0[level]
    for t in range(1, n):
        d = int(np.argmin(tables[t][:, level] + sw * np.abs(power - out[t - 1])))
        out[t] = power[d]
        level += int(moves[d])
    return out


def _prefix_min(a: np.ndarray) -> np.ndarray:
    """Running minimum down the rows."""
    out = np.array(a)
    k = 1
    while k < len(out):
        out[k:] = np.minimum(out[k:], out[:-k])
        k *= 2
    return out
