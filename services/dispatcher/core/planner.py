"""The planner: a linear program over the next 24-48 h that sets the battery's SoC path.

Per step ``t`` (length ``dt`` hours) the variables are AC-side powers in W, all >= 0:
charge ``c``, discharge ``d``, grid import ``i``, grid export ``e``, the SoC at the end of the step
``s`` (Wh), and ``u``, the size of the change in battery power from the step before. Constraints:

* balance at the meter: ``i - e + d - c = load - pv``
* energy: ``s[t] = s[t-1] + dt * (eta_c * c - d / eta_d)``, ``s`` between the band below
* switching: ``u[t] >= |(d - c)[t] - (d - c)[t-1]|`` (step ``-1`` is the battery's power now)

and the objective is the energy bill plus wear, plus ``switch_cost`` per kW of change in battery
power (the LP form of a cost per mode switch: a 1 kW charge-to-discharge flip costs 2x), minus the
value of the energy left at the end.

Exactness. Import and export in one step are impossible at one meter, and so are charge and
discharge at once. Where import is dearer than export and prices are positive the LP never wants
either (doing both only loses money), so the LP is exact there. Where a step's import price is
below its export price (the LP would import and export at once) or any price is negative (the LP
would burn stored energy by charging and discharging together, in any step before it), the cost
is no longer convex: a dynamic programme over a grid of SoC levels, which prices each step with
the true one-meter cost, chooses those steps' directions, and the LP with the directions fixed
(convex again) finds the exact powers; a local search over the fixed directions follows
(``_pinned_by_dp``, ``core/direction_dp.py``). No branch and bound: milliseconds, not seconds.
``reference_milp`` puts binaries on every step: the tests compare the two.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import highspy
import numpy as np

from services.dispatcher.core.direction_dp import dp_path
from shared.energy import soc_limits
from shared.energy.battery import BatteryModel
from shared.messages import Intent, Plan, PlanStep

__all__ = ["PlanInputs", "Schedule", "ScheduleError", "classify", "forget_warm_starts", "plan", "reference_milp"]

# Below this many watts a flow counts as zero (solver noise, and far below any inverter's step).
TOLERANCE_W = 25.0
# A W over one step costs ~1e-4 currency: the objective is handed to HiGHS in these smaller units
# so that its 1e-7 optimality tolerance is not a sizeable share of a step's cost (unscaled, a
# solver can stop a few percent short of the optimum; tests/unit/test_perfect.py saw 3%).
OBJECTIVE_SCALE = 1000.0
# The non-convex path's local search (see ``_pinned_by_dp``): at most FLIP_ROUNDS re-solves for
# free flips and SWAP_PASSES passes of trial swaps; a flow up to FLIP_FLOW_W counts as zero; a
# blocked column must gain more than FLIP_GAIN (objective units per W) to be worth a flip.
FLIP_ROUNDS = 8
SWAP_PASSES = 2
FLIP_FLOW_W = 1e-6
FLIP_GAIN = 1e-6
# Charge and discharge both above this in one step (W) is a tie the plan must not show: it is
# pinned to one direction (``_pinned_by_dp``, and the plain LP falls through to that path).
TIE_W = 1e-3


class ScheduleError(RuntimeError):
    """The solver did not return an optimal plan (the message carries HiGHS's status)."""


def _array(values: Sequence[float] | np.ndarray, name: str, n: int | None = None) -> np.ndarray:
    out = np.array(values, dtype=float)
    if out.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {out.shape}")
    if n is not None and len(out) != n:
        raise ValueError(f"{name} has {len(out)} steps, expected {n}")
    # ndarray methods, not np.all/np.any: a plan is validated ~17,500 times in a backtest year.
    if not np.isfinite(out).all():
        raise ValueError(f"{name} holds a non-finite value at step {int(np.argmin(np.isfinite(out)))}")
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class PlanInputs:
    """Everything one plan depends on. Prices per kWh; powers W (PV +, load +); times UTC."""

    start: datetime
    step_s: int
    soc_pct: float
    import_price: np.ndarray
    export_price: np.ndarray
    pv_w: np.ndarray
    load_w: np.ndarray
    battery: BatteryModel
    switch_cost: float = 0.002
    cycle_cost_per_kwh: float = 0.005
    terminal_value_factor: float = 0.9
    export_limit_w: float | None = None
    import_limit_w: float = 23_000.0
    battery_power_now_w: float = 0.0
    battery_may_export: bool = True
    # Joint load and PV scenarios (one row each, e.g. the same hours on each of the last days):
    # the plan then minimises the mean bill over them with one shared decision for step 0.
    load_scenarios_w: np.ndarray | None = None
    pv_scenarios_w: np.ndarray | None = None
    # The controller's setpoint step (``dispatcher.quantum_w``): it truncates toward zero, so a
    # planned grid charge or export is rounded up to it here, or every night would fall short.
    quantum_w: float = 0.0
    # Load (W per step, part of ``load_w`` and of every load scenario) the battery must not cover:
    # a heat pump past its budget or SoC floor, which the dispatcher leaves out of the battery's
    # target (``core.heat_pump_plan``). In those steps the battery discharges at most the rest.
    no_battery_w: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError(f"start {self.start.isoformat()} has no time zone")
        if self.step_s <= 0:
            raise ValueError(f"step_s must be > 0, got {self.step_s}")
        if not 0 <= self.soc_pct <= 100:
            raise ValueError(f"soc_pct must be within 0-100, got {self.soc_pct}")
        price = _array(self.import_price, "import_price")
        if len(price) == 0:
            raise ValueError("a plan needs at least one step")
        object.__setattr__(self, "import_price", price)
        object.__setattr__(self, "export_price", _array(self.export_price, "export_price", len(price)))
        object.__setattr__(self, "pv_w", _array(self.pv_w, "pv_w", len(price)))
        object.__setattr__(self, "load_w", _array(self.load_w, "load_w", len(price)))
        if self.no_battery_w is not None:
            object.__setattr__(self, "no_battery_w", _array(self.no_battery_w, "no_battery_w", len(price)))
            if self.no_battery_w.min() < 0:
                raise ValueError(f"no_battery_w must be >= 0, got {float(self.no_battery_w.min())}")
        if self.pv_w.min() < 0:
            raise ValueError(f"pv_w must be >= 0, got {float(self.pv_w.min())}")
        if self.load_w.min() < 0:
            raise ValueError(f"load_w must be >= 0, got {float(self.load_w.min())}")
        if (self.load_scenarios_w is None) != (self.pv_scenarios_w is None):
            raise ValueError("load_scenarios_w and pv_scenarios_w come together or not at all")
        if self.load_scenarios_w is not None and self.pv_scenarios_w is not None:
            for name in ("load_scenarios_w", "pv_scenarios_w"):
                grid = np.array(getattr(self, name), dtype=float)
                if grid.ndim != 2 or grid.shape[1] != len(price) or grid.shape[0] < 1:
                    raise ValueError(f"{name} must have shape (scenarios, {len(price)}), got {grid.shape}")
                # min() first: a NaN makes it NaN, so ``>= 0`` fails for it too.
                if not (grid.min() >= 0 and np.isfinite(grid).all()):
                    raise ValueError(f"{name} must be finite and >= 0")
                grid.setflags(write=False)
                object.__setattr__(self, name, grid)
            if self.load_scenarios_w.shape != self.pv_scenarios_w.shape:
                raise ValueError(
                    f"load and PV scenarios differ in shape: {self.load_scenarios_w.shape} "
                    f"vs {self.pv_scenarios_w.shape}"
                )

    @property
    def steps(self) -> int:
        return len(self.import_price)


@dataclass(frozen=True, eq=False)
class Schedule:
    """A solved plan: per-step mean powers (AC-bus sign), SoC at each step's end, and intent."""

    start: datetime
    step_s: int
    soc_pct_start: float
    battery_w: np.ndarray
    grid_w: np.ndarray
    soc_pct_end: np.ndarray
    intents: tuple[Intent, ...]
    import_price: np.ndarray
    export_price: np.ndarray
    pv_w: np.ndarray
    load_w: np.ndarray
    cost: float
    objective: float
    solver: str
    binaries: int = 0
    solve_ms: float = 0.0
    id: str = field(default="")

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.step_s * len(self.battery_w))

    def index_at(self, now: datetime) -> int | None:
        """The step in force at ``now``, or None outside the horizon."""
        offset = (now - self.start).total_seconds()
        if offset < 0:
            return None
        k = int(offset // self.step_s)
        return k if k < len(self.battery_w) else None

    def to_message(self, ts: datetime, reason: str = "scheduled") -> Plan:
        steps = tuple(
            PlanStep(
                start=self.start + timedelta(seconds=self.step_s * k),
                import_price_per_kwh=float(self.import_price[k]),
                export_price_per_kwh=float(self.export_price[k]),
                pv_forecast_w=float(self.pv_w[k]),
                load_forecast_w=float(self.load_w[k]),
                battery_power_w=round(float(self.battery_w[k]), 1),
                grid_power_w=round(float(self.grid_w[k]), 1),
                soc_pct_end=min(100.0, max(0.0, round(float(self.soc_pct_end[k]), 3))),
                intent=self.intents[k],
            )
            for k in range(len(self.battery_w))
        )
        extra = {"id": self.id} if self.id else {}
        return Plan(
            ts=ts,
            step_s=self.step_s,
            soc_pct_start=min(100.0, max(0.0, self.soc_pct_start)),
            steps=steps,
            expected_cost=round(self.cost, 6),
            solver=self.solver,
            solve_ms=round(self.solve_ms, 3),
            reason=reason,
            **extra,
        )

    @classmethod
    def from_message(cls, message: Plan) -> Schedule:
        """Back from the published form (e.g. the retained plan after a restart)."""
        steps = message.steps
        return cls(
            start=steps[0].start if steps else message.ts,
            step_s=message.step_s,
            soc_pct_start=message.soc_pct_start,
            battery_w=np.array([s.battery_power_w for s in steps]),
            grid_w=np.array([s.grid_power_w for s in steps]),
            soc_pct_end=np.array([s.soc_pct_end for s in steps]),
            intents=tuple(s.intent for s in steps),
            import_price=np.array([s.import_price_per_kwh for s in steps]),
            export_price=np.array([s.export_price_per_kwh for s in steps]),
            pv_w=np.array([s.pv_forecast_w for s in steps]),
            load_w=np.array([s.load_forecast_w for s in steps]),
            cost=message.expected_cost,
            objective=message.expected_cost,
            solver=message.solver,
            solve_ms=message.solve_ms or 0.0,
            id=message.id,
        )


def classify(battery_w: float, grid_w: float, tolerance_w: float = TOLERANCE_W) -> Intent:
    """The intent of one step from its planned battery and grid power.

    Charging while importing is a grid charge; discharging while exporting is a deliberate export;
    a battery left idle while the grid carries the difference is a hold; anything else is self-use
    (the battery meets the house; the controller caps it at the planned power when the plan rations).
    """
    if battery_w < -tolerance_w:
        return Intent.CHARGE if grid_w > tolerance_w else Intent.SELF_USE
    if battery_w > tolerance_w:
        return Intent.DISCHARGE if grid_w < -tolerance_w else Intent.SELF_USE
    return Intent.HOLD if abs(grid_w) > tolerance_w else Intent.SELF_USE


_INTENTS = (Intent.CHARGE, Intent.DISCHARGE, Intent.HOLD, Intent.SELF_USE)


def _classify_all(battery_w: np.ndarray, grid_w: np.ndarray, tolerance_w: float = TOLERANCE_W) -> tuple[Intent, ...]:
    """``classify`` of every step at once (a plan's steps; the per-step calls cost more than the LP)."""
    idle = np.abs(battery_w) <= tolerance_w
    which = np.select(
        [
            (battery_w < -tolerance_w) & (grid_w > tolerance_w),
            (battery_w > tolerance_w) & (grid_w < -tolerance_w),
            idle & (np.abs(grid_w) > tolerance_w),
        ],
        [0, 1, 2],
        default=3,
    )
    return tuple(_INTENTS[i] for i in which.tolist())


# Column blocks, in order: charge, discharge, import, export, soc, switch.
_C, _D, _I, _E, _S, _U = range(6)


class _Model:
    """Builds the HiGHS model for one ``PlanInputs``; binaries are added per step on request.

    ``load_w`` and ``pv_w`` may also be a stack of scenarios, shape (scenarios, steps): ``bounds``
    and ``row_bounds`` then give one block per scenario, in order, computed in one go (the
    scenario plan's hot path; ``build`` and ``_schedule`` take one scenario only).
    """

    def __init__(
        self,
        inputs: PlanInputs,
        load_w: np.ndarray | None = None,
        pv_w: np.ndarray | None = None,
        first_battery_w: float | None = None,
    ) -> None:
        self.x = inputs
        # Step 0's battery power fixed (one scenario only): the scenario plan's self-use step.
        self.first_battery_w = first_battery_w
        # One scenario's load and PV (the point forecast unless given): the plan's other inputs.
        self.load_w = inputs.load_w if load_w is None else load_w
        self.pv_w = inputs.pv_w if pv_w is None else pv_w
        self.net = self.load_w - self.pv_w
        self.n = inputs.steps
        self.dt_h = inputs.step_s / 3600.0

    @property
    def count(self) -> int:
        """Scenario blocks: 1 for one load and PV, else the stack's rows."""
        return 1 if self.net.ndim == 1 else int(self.net.shape[0])

    def col(self, block: int, t: int) -> int:
        return block * self.n + t

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        x, b = self.x, self.x.battery
        net = self.net
        # Tight physical bounds (also the big-M of the direction binaries): only importing, the most
        # is the net load plus a full charge; only exporting, the net surplus plus a full discharge.
        import_max = np.maximum(0.0, net + b.max_charge_w)
        import_max = np.minimum(import_max, np.maximum(x.import_limit_w, net))
        export_max = np.maximum(0.0, -net + b.max_discharge_w)
        if x.export_limit_w is not None:
            # PV above the limit that the battery cannot absorb is curtailed by the inverter: the
            # balance row's slack (``curtailable_w``), never export beyond the limit.
            export_max = np.minimum(export_max, x.export_limit_w)
        if not x.battery_may_export:
            # Only the PV surplus may leave the house: battery energy covers the load, nothing more.
            export_max = np.minimum(export_max, np.maximum(0.0, -net))
        soc_lo, soc_hi = soc_limits.plan_band_wh(b, x.soc_pct)
        # Blocks (charge, discharge, import, export, soc, switch) of n steps, per scenario.
        upper = np.empty((*net.shape[:-1], 6, self.n))
        upper[..., _C, :] = b.max_charge_w
        upper[..., _D, :] = b.max_discharge_w
        if x.no_battery_w is not None:
            # Where part of the load is not the battery's to cover, it discharges the rest at most.
            excluded = x.no_battery_w > 0
            upper[..., _D, :] = np.where(
                excluded, np.minimum(b.max_discharge_w, np.maximum(0.0, net - x.no_battery_w)), b.max_discharge_w
            )
        upper[..., _I, :] = import_max
        upper[..., _E, :] = export_max
        upper[..., _S, :] = soc_hi
        upper[..., _U, :] = np.inf
        lower = np.zeros_like(upper)
        lower[..., _S, :] = soc_lo
        if self.first_battery_w is not None:
            p = self.first_battery_w
            lower[..., _C, 0] = upper[..., _C, 0] = max(0.0, -p)
            lower[..., _D, 0] = upper[..., _D, 0] = max(0.0, p)
        return lower.reshape(-1), upper.reshape(-1)

    def costs(self) -> np.ndarray:
        """Objective per column of one block, in units of 1/OBJECTIVE_SCALE currency (see OBJECTIVE_SCALE)."""
        x, n, k = self.x, self.n, self.dt_h / 1000.0 * OBJECTIVE_SCALE
        wear = x.cycle_cost_per_kwh / 2.0 * k
        terminal = max(0.0, x.terminal_value_factor * x.battery.discharge_efficiency * float(x.import_price.min()))
        soc_cost = np.zeros(n)
        soc_cost[-1] = -terminal / 1000.0 * OBJECTIVE_SCALE
        return np.concatenate(
            [
                np.full(n, wear),
                np.full(n, wear),
                x.import_price * k,
                -x.export_price * k,
                soc_cost,
                np.full(n, x.switch_cost / 1000.0 * OBJECTIVE_SCALE),
            ]
        )

    def curtailable_w(self) -> np.ndarray:
        """PV the inverter may curtail per step: the surplus beyond the export limit (none without
        one). The balance row ``i - e + d - c`` may then exceed ``net`` by up to this much: PV that
        neither the house, the battery nor the export limit can take is curtailed, so a full
        battery under a low export limit is a plan, not an infeasible problem."""
        if self.x.export_limit_w is None:
            return np.zeros_like(self.net)
        return np.maximum(0.0, -self.net - self.x.export_limit_w)

    def row_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the base rows (balance, energy, switching up, switching down), see ``_base_rows``."""
        x = self.x
        net = self.net
        # Rows (balance, energy, switching up, switching down) of n steps, per scenario.
        lower = np.zeros((*net.shape[:-1], 4, self.n))
        lower[..., 0, :] = net
        lower[..., 1, 0] = x.battery.wh(x.soc_pct)
        lower[..., 2, 0] = -x.battery_power_now_w
        lower[..., 3, 0] = x.battery_power_now_w
        upper = lower.copy()
        upper[..., 0, :] = net + self.curtailable_w()
        upper[..., 2:, :] = np.inf
        return lower.reshape(-1), upper.reshape(-1)

    def build(self, grid_bin: Sequence[int], batt_bin: Sequence[int]) -> highspy.HighsLp:
        """The model, with direction binaries on the steps ``grid_bin`` and ``batt_bin``."""
        n, b = self.n, self.x.battery
        lower, upper = self.bounds()
        cost = self.costs()
        base_rows, base_entries = _base_rows(n, self.dt_h, b.charge_efficiency, b.discharge_efficiency)
        row_lo_v, row_hi_v = self.row_bounds()
        rows_lo: list[float] = []
        rows_hi: list[float] = []
        entries: list[tuple[int, int, float]] = []

        def row(lo: float, hi: float, terms: Sequence[tuple[int, float]]) -> None:
            r = base_rows + len(rows_lo)
            rows_lo.append(lo)
            rows_hi.append(hi)
            entries.extend((r, c, v) for c, v in terms)

        net = self.net
        # Direction binaries. Grid (z = 1: the step imports, else it exports) uses the disjunctive
        # hull of the whole step, not a plain big-M: the charge and discharge done while importing
        # (cA, dA) get their own columns, so the relaxation is "import for a fraction z of the step,
        # export for the rest" rather than "import and export half of everything" - far tighter,
        # which is what keeps these MILPs to a handful of nodes.
        extra = 6 * n
        ncols = extra
        integer: list[int] = []
        for t in grid_bin:
            c, d, i, e = (self.col(blk, t) for blk in (_C, _D, _I, _E))
            ca, da, z = ncols, ncols + 1, ncols + 2
            ncols += 3
            integer.append(z)
            row(0.0, 0.0, [(i, 1.0), (da, 1.0), (ca, -1.0), (z, -float(net[t]))])
            row(-np.inf, 0.0, [(i, 1.0), (z, -float(upper[i]))])
            row(-np.inf, float(upper[e]), [(e, 1.0), (z, float(upper[e]))])
            row(-np.inf, 0.0, [(ca, 1.0), (z, -b.max_charge_w)])
            row(-np.inf, 0.0, [(da, 1.0), (z, -b.max_discharge_w)])
            row(-np.inf, b.max_charge_w, [(c, 1.0), (ca, -1.0), (z, b.max_charge_w)])
            row(-np.inf, b.max_discharge_w, [(d, 1.0), (da, -1.0), (z, b.max_discharge_w)])
            row(0.0, np.inf, [(c, 1.0), (ca, -1.0)])
            row(0.0, np.inf, [(d, 1.0), (da, -1.0)])
        # Battery (y = 1: the step may charge, else discharge): a plain big-M is already the hull.
        for t in batt_bin:
            c, d = self.col(_C, t), self.col(_D, t)
            y = ncols
            ncols += 1
            integer.append(y)
            row(-np.inf, 0.0, [(c, 1.0), (y, -b.max_charge_w)])
            row(-np.inf, b.max_discharge_w, [(d, 1.0), (y, b.max_discharge_w)])
        nb = ncols - extra

        lp = highspy.HighsLp()
        lp.num_col_ = extra + nb
        lp.num_row_ = base_rows + len(rows_lo)
        lp.col_cost_ = np.concatenate([cost, np.zeros(nb)])
        lp.col_lower_ = np.concatenate([lower, np.zeros(nb)])
        upper_extra = np.full(nb, np.inf)
        upper_extra[np.array(integer, dtype=int) - extra] = 1.0
        lp.col_upper_ = np.concatenate([upper, upper_extra])
        lp.row_lower_ = np.concatenate([row_lo_v, np.array(rows_lo)])
        lp.row_upper_ = np.concatenate([row_hi_v, np.array(rows_hi)])
        r0, c0, v0 = base_entries
        if entries:
            arr = np.array(entries)
            r = np.concatenate([r0, arr[:, 0].astype(np.int32)])
            cidx = np.concatenate([c0, arr[:, 1].astype(np.int32)])
            val = np.concatenate([v0, arr[:, 2]])
        else:
            r, cidx, val = r0, c0, v0
        _set_matrix(lp, r, cidx, val)
        if integer:
            kinds = [highspy.HighsVarType.kContinuous] * lp.num_col_
            for k in integer:
                kinds[k] = highspy.HighsVarType.kInteger
            lp.integrality_ = kinds
        return lp


def _base_rows(
    n: int, dt_h: float, eta_c: float, eta_d: float, switching: bool = True
) -> tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The constraint matrix of the plain model, which depends only on the step count and battery.

    Rows ``[0, n)`` balance ``i - e + d - c = net``; ``[n, 2n)`` energy ``s[t] - s[t-1] - dt eta_c c
    + dt d / eta_d = (s0 at t = 0, else 0)``; ``[2n, 3n)`` and ``[3n, 4n)`` switching
    ``u[t] -+ ((d - c)[t] - (d - c)[t-1]) >= 0`` (at ``t = 0`` against the battery's power now,
    which sits in the row bound); without ``switching`` only the first two (``u`` then stays 0).
    Returns the row count and the entries as (rows, cols, values).
    """
    t = np.arange(n)
    cols = {blk: blk * n + t for blk in (_C, _D, _I, _E, _S, _U)}
    bal, en, up, down = t, n + t, 2 * n + t, 3 * n + t
    later = t[1:]
    parts = [
        (bal, cols[_I], 1.0),
        (bal, cols[_E], -1.0),
        (bal, cols[_D], 1.0),
        (bal, cols[_C], -1.0),
        (en, cols[_S], 1.0),
        (en, cols[_C], -eta_c * dt_h),
        (en, cols[_D], dt_h / eta_d),
        (n + later, cols[_S][:-1], -1.0),
    ]
    if not switching:
        parts = parts[:8]
    else:
        parts += [
        (up, cols[_U], 1.0),
        (up, cols[_D], -1.0),
        (up, cols[_C], 1.0),
        (2 * n + later, cols[_D][:-1], 1.0),
        (2 * n + later, cols[_C][:-1], -1.0),
        (down, cols[_U], 1.0),
        (down, cols[_D], 1.0),
        (down, cols[_C], -1.0),
        (3 * n + later, cols[_D][:-1], -1.0),
        (3 * n + later, cols[_C][:-1], 1.0),
        ]
    rows = np.concatenate([p[0] for p in parts]).astype(np.int32)
    columns = np.concatenate([p[1] for p in parts]).astype(np.int32)
    values = np.concatenate([np.full(len(p[0]), p[2], dtype=float) for p in parts])
    return (4 if switching else 2) * n, (rows, columns, values)


def _set_matrix(lp: highspy.HighsLp, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
    order = np.lexsort((rows, cols))
    counts = np.bincount(cols, minlength=lp.num_col_)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    lp.a_matrix_.index_ = rows[order].astype(np.int32)
    lp.a_matrix_.value_ = values[order]
    lp.a_matrix_.num_col_ = lp.num_col_
    lp.a_matrix_.num_row_ = lp.num_row_


class _Reusable:
    """One HiGHS instance per model shape, kept between plans: only bounds and costs change, so
    HiGHS starts from the last plan's basis (hot start) instead of building and solving afresh.

    The model is one plain block per scenario, the blocks' costs weighted equally. A point
    forecast is one block and nothing more. Scenarios (``shared=True``) also get what the
    dispatcher must decide before it knows which scenario comes true, and only that: one column
    ``g``, the power bought from the grid to charge during step 0, the same in every scenario.
    Each scenario's step-0 charge lies within ``[g, g + its PV surplus]`` and its step-0
    discharge within its net load, so beyond ``g`` every scenario does self-use with its own load
    and PV, which is what the controller does with the real ones.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._solvers: dict[tuple[int, int, float, float, float, bool], _Slot] = {}

    @staticmethod
    def _build(model: _Model, shared: bool) -> highspy.HighsLp:
        b, n, count = model.x.battery, model.n, model.count
        rows_per, (r0, c0, v0) = _base_rows(
            n, model.dt_h, b.charge_efficiency, b.discharge_efficiency, switching=not shared
        )
        rows = [r0 + k * rows_per for k in range(count)]
        cols = [c0 + k * 6 * n for k in range(count)]
        vals = [v0] * count
        ncol, nrow = 6 * n * count, count * rows_per
        if shared:
            grid_charge = ncol
            ncol += 1
            for k in range(count):
                rows.append(np.array([nrow, nrow], dtype=np.int32))
                cols.append(np.array([k * 6 * n + _C * n, grid_charge], dtype=np.int32))
                vals.append(np.array([1.0, -1.0]))
                nrow += 1
        lp = highspy.HighsLp()
        lp.num_col_ = ncol
        lp.num_row_ = nrow
        lp.col_cost_ = np.zeros(ncol)
        lp.col_lower_ = np.zeros(ncol)
        lp.col_upper_ = np.zeros(ncol)
        lp.row_lower_ = np.zeros(nrow)
        lp.row_upper_ = np.zeros(nrow)
        _set_matrix(lp, np.concatenate(rows), np.concatenate(cols), np.concatenate(vals))
        return lp

    def run(self, model: _Model, time_limit_s: float, shared: bool = False) -> tuple[np.ndarray, float, float]:
        """Solve ``model`` (one block per scenario of its stack); ``shared``: scenarios with one
        step-0 grid charge between them (see the class)."""
        b, n, count = model.x.battery, model.n, model.count
        key = (count, n, model.dt_h, b.charge_efficiency, b.discharge_efficiency, shared)
        lower, upper = model.bounds()
        row_lo, row_hi = model.row_bounds()
        cost = np.tile(model.costs() * (1.0 / count), count)
        if shared:
            net = model.net.reshape(count, n)
            block = upper.reshape(count, 6, n)
            block[:, _D, 0] = np.minimum(block[:, _D, 0], np.maximum(0.0, net[:, 0]))
            # Scenario blocks leave switching out: only step 0's grid charge is a decision,
            # and half the rows go.
            block[:, _U, :] = 0.0
            cost.reshape(count, 6, n)[:, _U, :] = 0.0
            row_lo = np.concatenate([row_lo.reshape(count, 4, n)[:, :2].reshape(-1), np.zeros(count)])
            row_hi = np.concatenate([row_hi.reshape(count, 4, n)[:, :2].reshape(-1), np.maximum(0.0, -net[:, 0])])
            lower = np.append(lower, 0.0)
            upper = np.append(upper, b.max_charge_w)
            cost = np.append(cost, 0.0)
        with self._lock:
            slot = self._solvers.get(key)
            if slot is None:
                if len(self._solvers) >= 16:
                    self._solvers.clear()
                h = highspy.Highs()
                h.setOptionValue("output_flag", False)
                # Small, hot-started LPs: presolve costs more than it saves.
                h.setOptionValue("presolve", "off")
                h.passModel(self._build(model, shared))
                slot = self._solvers[key] = _Slot(h, len(cost), len(row_lo))
            h = slot.highs
            shifted = slot.start == model.x.start - timedelta(seconds=model.x.step_s)
            # The basis is read before the bounds change: it is the last plan's, against its bounds.
            basis = slot.shifted_basis(count * 6 * n, count * (2 if shared else 4) * n, n) if shifted else None
            if not slot.update(cost, lower, upper, row_lo, row_hi):
                del self._solvers[key]
                raise ScheduleError(f"HiGHS refused the new bounds or costs for a {n}-step plan")
            if basis is not None:
                # The last plan started one step earlier: its basis moved one step along is
                # nearly this plan's (the same hours, the same scenario days), far closer than
                # the unshifted one. HiGHS repairs what no longer fits (an "alien" basis).
                h.setBasis(basis)
            slot.start = model.x.start
            # HiGHS's run clock keeps counting across runs of one instance; the limit is on it.
            h.setOptionValue("time_limit", h.getRunTime() + time_limit_s)
            began = time.perf_counter()
            h.run()
            status = h.getModelStatus()
            if status != highspy.HighsModelStatus.kOptimal:
                # A basis from a very different plan can stall; start clean once before giving up.
                h.clearSolver()
                h.run()
                status = h.getModelStatus()
            if status != highspy.HighsModelStatus.kOptimal:
                del self._solvers[key]
                raise ScheduleError(f"HiGHS returned {h.modelStatusToString(status)} for a {n}-step plan")
            values = slot.values = np.asarray(h.getSolution().col_value)
            elapsed_ms = (time.perf_counter() - began) * 1000.0
            return values, float(h.getObjectiveValue()) / OBJECTIVE_SCALE, elapsed_ms


# HighsBasisStatus by its number (kLower, kBasic, kUpper, kZero, kNonbasic): statuses are worked
# out as small integers in numpy and only turned into HiGHS's objects at the end, because
# reading ``HighsBasis.col_status`` makes one Python object per column (~1.5 ms a plan).
_BASIS_STATUS = np.array(
    [
        highspy.HighsBasisStatus.kLower,
        highspy.HighsBasisStatus.kBasic,
        highspy.HighsBasisStatus.kUpper,
        highspy.HighsBasisStatus.kZero,
        highspy.HighsBasisStatus.kNonbasic,
    ],
    dtype=object,
)
_LOWER, _BASIC, _UPPER = 0, 1, 2


class _Slot:
    """One kept HiGHS instance and what it was last given (so a plan changes only what differs)."""

    def __init__(self, highs: highspy.Highs, cols: int, rows: int) -> None:
        self.highs = highs
        self.start: datetime | None = None
        # As ``_Reusable._build`` passes the model: everything zero.
        self.cost = np.zeros(cols)
        self.lower = np.zeros(cols)
        self.upper = np.zeros(cols)
        self.row_lo = np.zeros(rows)
        self.row_hi = np.zeros(rows)
        self.values = np.zeros(cols)  # the last solution's columns

    def update(
        self, cost: np.ndarray, lower: np.ndarray, upper: np.ndarray, row_lo: np.ndarray, row_hi: np.ndarray
    ) -> bool:
        """Hand HiGHS the costs and bounds that differ from the last plan's; False if it refuses one."""
        h, ok = self.highs, highspy.HighsStatus.kOk
        statuses = []
        idx = np.flatnonzero(cost != self.cost).astype(np.int32)
        if len(idx):
            statuses.append(h.changeColsCost(len(idx), idx, cost[idx]))
        idx = np.flatnonzero((lower != self.lower) | (upper != self.upper)).astype(np.int32)
        if len(idx):
            statuses.append(h.changeColsBounds(len(idx), idx, lower[idx], upper[idx]))
        idx = np.flatnonzero((row_lo != self.row_lo) | (row_hi != self.row_hi)).astype(np.int32)
        if len(idx):
            # In the binding, missing from its stub.
            statuses.append(h.changeRowsBounds(len(idx), idx, row_lo[idx], row_hi[idx]))  # type: ignore[attr-defined]
        self.cost, self.lower, self.upper, self.row_lo, self.row_hi = cost, lower, upper, row_lo, row_hi
        return all(status == ok for status in statuses)

    def shifted_basis(self, col_body: int, row_body: int, n: int) -> highspy.HighsBasis | None:
        """The last optimal basis, each per-step run of ``n`` statuses moved one step earlier.

        Worked out from HiGHS's basic variables and the last solution against the bounds it was
        solved with: a nonbasic column or row sits at its upper bound (kUpper) or its lower one
        (kLower); an equality row is kUpper when its dual is positive, as HiGHS reports it.
        """
        h = self.highs
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        solution = h.getSolution()
        x = self.values
        cols = np.where((x == self.upper) & (self.lower < self.upper), _UPPER, _LOWER)
        fixed = self.row_lo == self.row_hi
        at_upper = np.asarray(solution.row_dual) > 0
        # A row with no upper bound is never at it: HiGHS's row values (one Python float each)
        # are fetched only when some other row has one, often none in a scenario plan.
        bounded = ~fixed & (self.row_hi < np.inf)
        if bounded.any():
            at_upper = np.where(fixed, at_upper, np.asarray(solution.row_value) == self.row_hi)
        else:
            at_upper &= fixed
        rows = np.where(at_upper, _UPPER, _LOWER)
        _, basic = h.getBasicVariables()  # type: ignore[attr-defined]  # in the binding, not its stub
        basic = np.asarray(basic)
        cols[basic[basic >= 0]] = _BASIC
        rows[-1 - basic[basic < 0]] = _BASIC
        basis = highspy.HighsBasis()
        basis.col_status = _BASIS_STATUS[_shift(cols, col_body, n)].tolist()
        basis.row_status = _BASIS_STATUS[_shift(rows, row_body, n)].tolist()
        basis.valid = True
        basis.alien = True
        return basis


_REUSABLE = _Reusable()


def forget_warm_starts() -> None:
    """Drop the kept HiGHS instances: the next plan of every shape starts from scratch.

    A warm start can pick another of two equally cheap plans, so a backtest calls this first:
    its result then does not depend on what was planned before it in the same process.
    """
    with _REUSABLE._lock:
        _REUSABLE._solvers.clear()


def _shift(status: np.ndarray, body: int, n: int) -> np.ndarray:
    """The first ``body`` statuses, runs of ``n`` per step, each moved one step earlier (last
    repeated); the rest (columns or rows not per step) as they are."""
    runs = status[:body].reshape(-1, n)
    moved = np.concatenate([runs[:, 1:], runs[:, -1:]], axis=1).reshape(-1)
    return np.concatenate([moved, status[body:]])


def _run(
    lp: highspy.HighsLp,
    gap: float,
    steps: int,
    time_limit_s: float = 60.0,
) -> tuple[np.ndarray, float, float]:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", time_limit_s)
    h.setOptionValue("mip_rel_gap", gap)
    h.setOptionValue("mip_abs_gap", 1e-6 * OBJECTIVE_SCALE)
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    timed_out = status == highspy.HighsModelStatus.kTimeLimit and h.getInfo().primal_solution_status == 2
    if status != highspy.HighsModelStatus.kOptimal and not timed_out:
        raise ScheduleError(f"HiGHS returned {h.modelStatusToString(status)} for a {steps}-step plan")
    values = np.array(h.getSolution().col_value)
    return values, float(h.getInfo().objective_function_value) / OBJECTIVE_SCALE, h.getRunTime() * 1000.0


def _schedule(model: _Model, values: np.ndarray, objective: float, solver: str, binaries: int, ms: float) -> Schedule:
    x, n = model.x, model.n
    block = values.reshape(6, n)
    charge, discharge, imp, exp, soc = block[_C], block[_D], block[_I], block[_E], block[_S]
    battery = discharge - charge
    grid = imp - exp  # the physical quantity: one direction per step at one meter
    intents = _classify_all(battery, grid)
    k = model.dt_h / 1000.0
    cost = float(np.sum(np.where(grid > 0, grid * x.import_price, grid * x.export_price)) * k)
    return Schedule(
        start=x.start.astimezone(UTC),
        step_s=x.step_s,
        soc_pct_start=x.soc_pct,
        battery_w=battery,
        grid_w=grid,
        soc_pct_end=soc / x.battery.capacity_wh * 100.0,
        intents=intents,
        import_price=x.import_price,
        export_price=x.export_price,
        pv_w=model.pv_w,
        load_w=model.load_w,
        cost=cost,
        objective=objective,
        solver=solver,
        binaries=binaries,
        solve_ms=ms,
    )


def _both_ways(values: np.ndarray, n: int, a: int, b: int, tolerance_w: float = TOLERANCE_W) -> set[int]:
    block = values.reshape(6, n)
    return {int(t) for t in np.nonzero((block[a] > tolerance_w) & (block[b] > tolerance_w))[0]}


def plan(
    inputs: PlanInputs, *, exact: bool = True, time_limit_s: float = 5.0, first_step_only: bool = False
) -> Schedule:
    """Solve one plan (see ``_solve``); charge and discharge steps rounded up to ``quantum_w``.

    ``first_step_only``: the caller acts on step 0 alone and plans again before step 1 begins
    (the backtest). Where step 0's decision is known without the rest of the plan (the scenario
    plan's self-use step, see ``_scenario_plan``), no LP is solved and the schedule holds just
    that step; everywhere else the whole plan is solved as usual. Step 0 is the same either way.
    """
    schedule = _solve(inputs, exact=exact, time_limit_s=time_limit_s, first_step_only=first_step_only)
    q = inputs.quantum_w
    if q <= 0:
        return schedule
    return _round_to_quantum(inputs, schedule, q)


def _round_to_quantum(inputs: PlanInputs, schedule: Schedule, q: float) -> Schedule:
    """Charge and discharge steps rounded up to ``q`` (within the grid's import and export limits).

    The controller stops the battery at the band's edges (the reserve going down, the ceiling
    going up): a step rounded up past the ceiling fills it and stops there. The SoC the schedule
    reports is the one the rounded powers give with that stop, so it is the SoC the controller
    will deliver, never outside the band.
    """
    b = inputs.battery
    dt_h = inputs.step_s / 3600.0
    before = schedule.battery_w
    battery = before.copy()
    grid = schedule.grid_w
    net = np.asarray(schedule.load_w, dtype=float) - np.asarray(schedule.pv_w, dtype=float)
    import_cap = np.maximum(inputs.import_limit_w, net)
    export_cap = np.full(len(net), np.inf if inputs.export_limit_w is None else inputs.export_limit_w)
    if not inputs.battery_may_export:
        export_cap = np.minimum(export_cap, np.maximum(0.0, -net))  # the PV surplus, no more
    for k, intent in enumerate(schedule.intents):
        p = float(before[k])
        if intent is Intent.CHARGE and p < 0:
            want = -min(b.max_charge_w, math.ceil(-p / q - 1e-9) * q)
            battery[k] = p - min(p - want, max(0.0, float(import_cap[k] - grid[k])))
        elif intent is Intent.DISCHARGE and p > 0:
            want = min(b.max_discharge_w, math.ceil(p / q - 1e-9) * q)
            battery[k] = p + min(want - p, max(0.0, float(export_cap[k] + grid[k])))
    if np.array_equal(battery, before):
        return schedule
    lo, hi = soc_limits.plan_band_wh(b, inputs.soc_pct)
    if schedule.solver == "lp_scenarios":
        # The scenarios' mean SoC is not the SoC of the mean power: left as it is.
        return replace(schedule, battery_w=battery, grid_w=grid + before - battery)
    moved = np.where(battery < 0, -battery * b.charge_efficiency, -battery / b.discharge_efficiency) * dt_h
    soc = np.empty(len(battery))
    level = b.wh(inputs.soc_pct)
    for k in range(len(battery)):
        level = min(max(level + float(moved[k]), lo), hi)
        soc[k] = level
    return replace(
        schedule,
        battery_w=battery,
        grid_w=grid + before - battery,
        soc_pct_end=soc / b.capacity_wh * 100.0,
    )


def _solve(
    inputs: PlanInputs, *, exact: bool = True, time_limit_s: float = 5.0, first_step_only: bool = False
) -> Schedule:
    """Solve one plan: a plain LP where that is exact, else the LP with directions from a DP.

    Steps where the LP is not exact (import cheaper than export, or a negative price) take their
    directions from a dynamic programme over the SoC (``core/direction_dp.py``), and the LP with
    those directions fixed, convex again, gives the exact powers (``_pinned_by_dp``). ``exact``
    adds a local search over the fixed directions (the backtest's fast path leaves it out).
    Steps where import is dearer than export and prices are positive never need any of this.
    """
    model = _Model(inputs)
    n = model.n
    grid_bad = sorted(np.nonzero(inputs.import_price < inputs.export_price)[0].tolist())
    # A price below zero gives stored energy a negative value in the steps before it too: the LP
    # would burn it (charge and discharge at once) anywhere, so every step gets a battery direction.
    batt_bad = list(range(n)) if float(np.minimum(inputs.import_price, inputs.export_price).min()) < 0 else []
    if not grid_bad and not batt_bad:
        if inputs.load_scenarios_w is not None and inputs.pv_scenarios_w is not None:
            return _scenario_plan(inputs, time_limit_s, first_step_only)
        return _solve_convex(model, time_limit_s, exact)
    values, objective, ms = _pinned_by_dp(model, grid_bad, batt_bad, time_limit_s, search=exact)
    return _schedule(model, values[: 6 * n], objective, "lp_pinned", len(grid_bad) + len(batt_bad), ms)


def _solve_convex(model: _Model, time_limit_s: float, exact: bool) -> Schedule:
    """One scenario's plan where the prices are convex: the plain LP, unless it ties."""
    n = model.n
    values, objective, ms = _REUSABLE.run(model, time_limit_s)
    # A tie (equal prices, zero wear, energy the plan cannot use) can leave both directions in an
    # optimal vertex. Netting the grid flows costs nothing then; a battery tie falls through to
    # the pinned path.
    batt_bad = sorted(_both_ways(values, n, _C, _D, TIE_W))
    if not batt_bad:
        return _schedule(model, values[: 6 * n], objective, "lp", 0, ms)
    values, objective, more = _pinned_by_dp(model, [], batt_bad, time_limit_s, search=exact)
    return _schedule(model, values[: 6 * n], objective, "lp_pinned", len(batt_bad), ms + more)


def _pinned_by_dp(
    model: _Model, grid_bad: Sequence[int], batt_bad: Sequence[int], time_limit_s: float, *, search: bool
) -> tuple[np.ndarray, float, float]:
    """The LP with the non-convex steps' directions fixed to the DP's, then improved locally.

    With every direction fixed the problem is an LP, exact for those directions, and the DP's own
    path is one of its feasible points: the answer is never worse than the DP's. Then two moves,
    each of which can only lower the objective:

    * free flips: a step whose allowed flow came out zero is also feasible in the other direction;
      where the LP's reduced cost of the blocked flow says it would pay, the step flips and the LP
      re-solves (hot-started), until none would pay;
    * with ``search``, trial swaps: each step where the direction changes from its neighbour's (the
      edges of the DP's import/export or charge/discharge runs, where a grid of levels misjudges)
      tries the other direction, kept when the LP's objective falls.

    Returns the LP's values, objective and the milliseconds spent (DP and LPs).
    """
    x, n = model.x, model.n
    began = time.perf_counter()
    _, upper = model.bounds()
    export_max = upper[_E * n : (_E + 1) * n]
    if x.export_limit_w is not None:
        # The DP counts curtailed PV as export: beyond the limit, it is priced out only where a
        # full-power charge could have taken it.
        export_max = np.maximum(export_max, -model.net - x.battery.max_charge_w)
    path = dp_path(
        battery=x.battery,
        soc_pct=x.soc_pct,
        step_s=x.step_s,
        net_w=model.net,
        import_price=x.import_price,
        export_price=x.export_price,
        import_max_w=upper[_I * n : (_I + 1) * n],
        export_max_w=export_max,
        cycle_cost_per_kwh=x.cycle_cost_per_kwh,
        switch_cost=x.switch_cost,
        terminal_per_wh=-float(model.costs()[_S * n + n - 1]) / OBJECTIVE_SCALE,
        battery_power_now_w=x.battery_power_now_w,
    )
    pins = _Pins(model, upper, time_limit_s)
    for t in grid_bad:
        pins.add(model.col(_I, t), model.col(_E, t), not path.grid_w[t] > 0)
    for t in batt_bad:
        pins.add(model.col(_C, t), model.col(_D, t), not path.battery_w[t] < 0)
    first = pins.solve_first()
    if first is None:
        # The DP's directions admit no plan: a move the DP priced out rather than forbade (beyond
        # an import or export limit) was the cheapest it had. Importing where the house needs
        # more than its PV and exporting where it has a surplus, with the battery idle, is always
        # a plan (the SoC stays where it is, inside the band; PV beyond the export limit is
        # curtailed): start there, and let the moves below improve on it.
        for t in grid_bad:
            pins.set(model.col(_I, t), not model.net[t] > 0)
        first = pins.solve_first()
    if first is None:
        status = pins.h.modelStatusToString(pins.h.getModelStatus())
        raise ScheduleError(f"HiGHS returned {status} for a {n}-step plan with its directions fixed")
    values, objective = first
    for _ in range(FLIP_ROUNDS):
        solution = pins.h.getSolution()
        reduced = np.array(solution.col_dual)
        free = [
            k
            for k, (used, blocked) in enumerate(pins.flows())
            if values[used] <= FLIP_FLOW_W and reduced[blocked] < -FLIP_GAIN
        ]
        if not free:
            break
        for k in free:
            pins.flip(k)
        values, objective = pins.solve()
    if search:
        for _ in range(SWAP_PASSES):
            improved = False
            for k in pins.edges():
                pins.flip(k)
                trial = pins.try_solve()
                if trial is not None and trial[1] < objective - 1e-9:
                    values, objective = trial
                    improved = True
                else:
                    pins.flip(k)
            if not improved:
                break
    for _ in range(n):  # each round pins at least one more step
        # A battery step left free (its prices convex) may still charge and discharge at once
        # where that costs nothing (no wear, and energy the plan cannot use anyway): a tie, but
        # not a plan (its SoC would not follow from its power). Pin such steps to their net
        # direction; the energy burnt is curtailed or not taken instead, at the same cost.
        burnt = sorted(_both_ways(values[: 6 * n], n, _C, _D, TIE_W))
        if not burnt:
            break
        block = values[: 6 * n].reshape(6, n)
        for t in burnt:
            pins.pin_now(model.col(_C, t), model.col(_D, t), bool(block[_D, t] > block[_C, t]))
        values, objective = pins.solve()
    return values, objective, (time.perf_counter() - began) * 1000.0


class _Pins:
    """One HiGHS LP whose non-convex steps each have one of two flows blocked (upper bound 0).

    A pin is (first column, second column, pinned to the second): grid steps (import, export),
    battery steps (charge, discharge). Flipping a pin changes two bounds and re-solves from the
    last basis.
    """

    def __init__(self, model: _Model, upper: np.ndarray, time_limit_s: float) -> None:
        self.model = model
        self.upper = upper
        self.time_limit_s = time_limit_s
        self.pins: list[tuple[int, int, bool]] = []
        self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", False)

    def add(self, first: int, second: int, on_second: bool) -> None:
        self.pins.append((first, second, on_second))

    def pin_now(self, first: int, second: int, on_second: bool) -> None:
        """Add a pin to the model already built (after ``solve_first``)."""
        self.pins.append((first, second, not on_second))
        self.flip(len(self.pins) - 1)

    def set(self, first: int, on_second: bool) -> None:
        """Re-pin the pin on column ``first`` (before ``solve_first``)."""
        self.pins = [(a, b, on_second if a == first else on) for a, b, on in self.pins]

    def flows(self) -> list[tuple[int, int]]:
        """(the column in use, the blocked column) per pin."""
        return [(second, first) if on else (first, second) for first, second, on in self.pins]

    def edges(self) -> list[int]:
        """Pins whose direction differs from the same kind's pin on a neighbouring step (or that
        have no such neighbour): the ends of the runs."""
        n = self.model.n
        kind = {(first // n, first % n): on for first, _, on in self.pins}
        return [
            k
            for k, (first, _, on) in enumerate(self.pins)
            if kind.get((first // n, first % n - 1)) != on or kind.get((first // n, first % n + 1)) != on
        ]

    def flip(self, k: int) -> None:
        first, second, on = self.pins[k]
        on = not on
        self.h.changeColBounds(first, 0.0, 0.0 if on else float(self.upper[first]))
        self.h.changeColBounds(second, 0.0, float(self.upper[second]) if on else 0.0)
        self.pins[k] = (first, second, on)

    def solve_first(self) -> tuple[np.ndarray, float] | None:
        """Build and solve the LP with the pins as they are; None if it has no optimum."""
        upper = self.upper.copy()
        upper[[first if on else second for first, second, on in self.pins]] = 0.0
        lp = self.model.build((), ())
        lp.col_upper_ = upper
        self.h.passModel(lp)
        return self.try_solve()

    def try_solve(self) -> tuple[np.ndarray, float] | None:
        self.h.setOptionValue("time_limit", self.h.getRunTime() + self.time_limit_s)
        self.h.run()
        if self.h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        return np.array(self.h.getSolution().col_value), self.h.getInfo().objective_function_value / OBJECTIVE_SCALE

    def solve(self) -> tuple[np.ndarray, float]:
        out = self.try_solve()
        if out is None:
            status = self.h.modelStatusToString(self.h.getModelStatus())
            raise ScheduleError(f"HiGHS returned {status} for a {self.model.n}-step plan")
        return out


def _scenario_plan(inputs: PlanInputs, time_limit_s: float, first_step_only: bool = False) -> Schedule:
    """The mean bill over the scenarios, step 0 decided once (see ``_Reusable``); convex prices only.

    The schedule shows the scenarios' mean (battery, grid, SoC, load and PV) except at step 0,
    the step the controller acts on: a grid charge there is a ``charge`` at that power; otherwise
    the step is self-use, and its battery power is the most any scenario discharges (or, when
    none does, charges), which is the cap the controller's self-use keeps to; a step where no
    scenario moves the battery is a hold.
    """
    assert inputs.load_scenarios_w is not None and inputs.pv_scenarios_w is not None
    point = _Model(inputs, inputs.load_scenarios_w.mean(axis=0), inputs.pv_scenarios_w.mean(axis=0))
    later = inputs.import_price[1:]
    if len(later) == 0 or (
        float(later.max()) <= float(inputs.import_price[0]) and float(later.min()) >= float(inputs.export_price[0])
    ):
        # No later import price above this step's: nothing bought now, and no energy kept back now,
        # can pay later; none below this step's export price: no PV surplus is better sold now to
        # make room. Step 0 is then plain self-use whatever the day brings, and the scenarios
        # cannot change it: the plan beyond it is the point forecast's.
        if first_step_only:
            return _self_use_step(point)
        # The plan beyond step 0 follows from step 0 as self-use (the LP with it fixed), so the
        # SoC it shows is the one self-use leaves.
        net0 = float(point.net[0])
        first = _self_use_w(inputs.battery, inputs.soc_pct, net0, point.dt_h, _excluded0(inputs))
        fixed = _Model(inputs, point.load_w, point.pv_w, first_battery_w=first)
        schedule = _solve_convex(fixed, time_limit_s, exact=True)
        return _plain_self_use_first(schedule, b=inputs.battery, net0=net0, x=inputs)
    scenarios = _Model(inputs, inputs.load_scenarios_w, inputs.pv_scenarios_w)
    values, objective, ms = _REUSABLE.run(scenarios, time_limit_s, shared=True)
    n, count = scenarios.n, scenarios.count
    blocks = values[: count * 6 * n].reshape(count, 6, n)
    grid_charge = float(values[count * 6 * n])
    each = blocks[:, _D, 0] - blocks[:, _C, 0]
    net0 = float(point.net[0])
    if grid_charge > TOLERANCE_W:
        first_w, intent = float(each.mean()), Intent.CHARGE
    elif np.all(np.abs(each) <= TOLERANCE_W):
        first_w, intent = 0.0, (Intent.HOLD if abs(net0) > TOLERANCE_W else Intent.SELF_USE)
    else:
        first_w = float(each.max()) if each.max() > TOLERANCE_W else float(each.min())
        intent = Intent.SELF_USE
    # The expected bill: each scenario's own one-meter cost, averaged (not the cost of the mean).
    k = point.dt_h / 1000.0
    flows = blocks[:, _I] - blocks[:, _E]
    bills = np.where(flows > 0, flows * inputs.import_price, flows * inputs.export_price).sum(axis=1) * k
    if first_step_only:
        soc0 = float(blocks[:, _S, 0].mean()) / inputs.battery.capacity_wh * 100.0
        expected = float(bills.mean())
        grid0 = _metered(inputs, net0, first_w)
        return _one_step(point, first_w, grid0, soc0, intent, expected, objective, "lp_scenarios", ms)
    schedule = _schedule(point, blocks.mean(axis=0).reshape(6 * n), objective, "lp_scenarios", 0, ms)
    battery = schedule.battery_w.copy()
    grid = schedule.grid_w.copy()
    battery[0], grid[0] = first_w, _metered(inputs, net0, first_w)
    return replace(
        schedule,
        battery_w=battery,
        grid_w=grid,
        intents=(intent, *schedule.intents[1:]),
        cost=float(bills.mean()),
    )


def _self_use_step(model: _Model) -> Schedule:
    """Step 0 alone, as ``_plain_self_use_first`` makes it, with no LP behind it (``first_step_only``).

    Its SoC at the step's end is the self-use step's own (the whole plan shows the point LP's).
    """
    x, b = model.x, model.x.battery
    net0 = float(model.net[0])
    battery = _self_use_w(b, x.soc_pct, net0, model.dt_h, _excluded0(x), within_band=False)
    grid = _metered(x, net0, battery)
    flow = _self_use_w(b, x.soc_pct, net0, model.dt_h, _excluded0(x))  # what the band lets it move
    moved = -flow * b.charge_efficiency if flow < 0 else -flow / b.discharge_efficiency
    soc_end = (b.wh(x.soc_pct) + moved * model.dt_h) / b.capacity_wh * 100.0
    price = float(x.import_price[0]) if grid > 0 else float(x.export_price[0])
    cost = grid * price * model.dt_h / 1000.0
    return _one_step(model, battery, grid, soc_end, Intent.SELF_USE, cost, cost, "self_use", 0.0)


def _one_step(
    model: _Model,
    battery_w: float,
    grid_w: float,
    soc_pct_end: float,
    intent: Intent,
    cost: float,
    objective: float,
    solver: str,
    ms: float,
) -> Schedule:
    """A schedule of step 0 alone (``first_step_only``), with ``model``'s inputs for that step."""
    x = model.x
    return Schedule(
        start=x.start.astimezone(UTC),
        step_s=x.step_s,
        soc_pct_start=x.soc_pct,
        battery_w=np.array([battery_w]),
        grid_w=np.array([grid_w]),
        soc_pct_end=np.array([soc_pct_end]),
        intents=(intent,),
        import_price=x.import_price[:1],
        export_price=x.export_price[:1],
        pv_w=model.pv_w[:1],
        load_w=model.load_w[:1],
        cost=cost,
        objective=objective,
        solver=solver,
        solve_ms=ms,
    )


def _self_use_w(
    b: BatteryModel, soc_pct: float, net_w: float, dt_h: float, excluded_w: float = 0.0, *, within_band: bool = True
) -> float:
    """Self-use's battery power over one step: the net load within the battery's power, less
    ``excluded_w`` of it that is not the battery's to cover (``PlanInputs.no_battery_w``).
    ``within_band``: the mean power over the step that the SoC band allows (none at or below the
    reserve going down, none at or above the ceiling going up), the flow a plan can show; without
    it, the cap the controller's self-use keeps to: the controller stops the battery at the band's
    edges itself, and a cap cut to the band's room would be truncated to the quantum and stop the
    battery short of the edge."""
    most_out = b.max_discharge_w
    if excluded_w > 0:
        most_out = min(most_out, max(0.0, net_w - excluded_w))
    most_in = b.max_charge_w
    if within_band:
        lo, hi = soc_limits.plan_band_wh(b, soc_pct)
        now = b.wh(soc_pct)
        most_out = min(most_out, max(0.0, now - lo) * b.discharge_efficiency / dt_h)
        most_in = min(most_in, max(0.0, hi - now) / (b.charge_efficiency * dt_h))
    return min(max(net_w, -most_in), most_out)


def _excluded0(x: PlanInputs) -> float:
    return 0.0 if x.no_battery_w is None else float(x.no_battery_w[0])


def _metered(x: PlanInputs, net_w: float, battery_w: float) -> float:
    """The grid flow of one step (import +) with the battery at ``battery_w``: PV beyond the export
    limit is curtailed, as the LP's balance row allows (``_Model.curtailable_w``)."""
    grid = net_w - battery_w
    return grid if x.export_limit_w is None else max(grid, -x.export_limit_w)


def _plain_self_use_first(schedule: Schedule, b: BatteryModel, net0: float, x: PlanInputs) -> Schedule:
    """Step 0 as plain self-use: the battery meets the net load within its power (grid 0), so the
    controller's self-use keeps no cap below what the house needs. Its battery power is that cap
    (the controller stops the battery at the band's edges itself); its SoC, the LP's with step 0
    fixed to the flow the band allows."""
    battery = schedule.battery_w.copy()
    grid = schedule.grid_w.copy()
    dt_h = schedule.step_s / 3600.0
    battery[0] = _self_use_w(b, schedule.soc_pct_start, net0, dt_h, _excluded0(x), within_band=False)
    grid[0] = _metered(x, net0, float(battery[0]))
    return replace(schedule, battery_w=battery, grid_w=grid, intents=(Intent.SELF_USE, *schedule.intents[1:]))


def reference_milp(inputs: PlanInputs, *, mip_gap: float = 1e-6) -> Schedule:
    """The exact problem with a direction binary on every step, grid and battery: the yardstick.

    Slow (branch and bound, seconds on 48 h); for tests and benchmarks, not for the live loop.
    """
    model = _Model(inputs)
    every = list(range(inputs.steps))
    values, objective, ms = _run(model.build(every, every), mip_gap, inputs.steps)
    return _schedule(model, values[: 6 * model.n], objective, "milp_reference", 2 * inputs.steps, ms)
