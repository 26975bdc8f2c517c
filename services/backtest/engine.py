"""Replay a house's load and PV through the same plan/control core, for one policy at a time.

The house is simulated with the data's own step: at each step the controller sees the grid as the
meter would (load - pv - the battery's last power) and sets the battery; the battery then runs
the step at that power, stopping where the controller would stop it within the step (the reserve
going down, the ceiling going up; the floor and 100% below and above those).
Plans are made every ``replan_minutes`` (30) at ``step_minutes`` resolution:

* ``planner``: the live planner on forecasts only from data before the decision: the last 7
  days' joint load and PV as scenarios (``core.forecast.history_scenarios``), before that load by
  weekday and time of day and clear-sky PV times the clearness of the last 24 h;
* ``perfect``: the yardstick, not a controller: the bill's optimum with perfect foresight over the
  whole data at the data's own step, one optimisation (``perfect.perfect_foresight``), replayed
  through the same accounting;
* ``self_use``: no plan, the controller zeroes the grid (a plain greedy self-use is reported
  beside it); ``none``: no battery at all.

Flexible loads (``flexible.py``) run under the policies the dispatcher's controller runs,
``self_use`` and ``planner``: they draw on top of the data's load, the controller switches them and
spends their budgets as live, the planner plans their expected draw (``core.heat_pump.expected_draw_w``
on the draw simulated so far), and each result reports their energy and the battery's share of it
(``flexible``). A heat pump draws under ``none`` and ``perfect`` too, so the four bills pay for the
same heat: with no dispatcher to switch it, it runs as its run window says (on through the window,
off outside; under ``after_budget: off`` only until it has drawn its budget in the period, as the
dispatcher runs it; ``core.heat_pump.unattended_on``; the switch, as every switch, acting from the
step after), and ``perfect``'s
whole-period optimisation takes that draw as load it cannot move (the planner, too, is given the
heat pump as load, not as a decision). A diverter (a reaction to the export within the step, not a
load that can be written down before the battery's decisions) stays with the controller's policies.

Every policy also reports, beside its bill and never mixed into it, the planner's own wear figure
(``cycle_cost_per_kwh`` on the energy through the battery) and switching figure
(``switch_cost_per_change`` per kW of change in battery power from one data step to the next).
"""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import pandas as pd

from services.dispatcher.core.controller import ControlParams, Memory, control
from services.dispatcher.core.forecast import (
    PvArray,
    clear_sky_pv_w,
    clearness,
    history_scenarios,
    load_profile_forecast,
)
from services.dispatcher.core.heat_pump import RECENT_DAYS, expected_draw_w, unattended_on
from services.dispatcher.core.heat_pump_plan import HeatPumpDraw, plan_with_heat_pumps
from services.dispatcher.core.planner import PlanInputs, Schedule, forget_warm_starts, plan
from services.dispatcher.core.replan import should_replan
from services.dispatcher.core.snapshot import LoadReading, ModeState, Snapshot
from shared.config import LoadConfig
from shared.config.dispatcher import DispatcherConfig
from shared.config.loads import HeatPumpLoad
from shared.energy import soc_limits
from shared.energy.accounting import ExportStep, ExportTally, PolicyResult, night_made
from shared.energy.battery import BatteryModel
from shared.energy.tariff import Tariff
from shared.messages import DispatcherModeName

from .data import Series
from .flexible import FlexibleLoad, FlexTally, HeatPumpDemand, flexible_loads
from .greedy import greedy_self_use
from .perfect import perfect_foresight

__all__ = ["POLICIES", "Carry", "Replay", "Setup", "resets", "same_state", "simulate"]

POLICIES = ("none", "self_use", "planner", "perfect")
HISTORY_DAYS = 28
PROGRESS_EVERY = 480  # steps between progress reports: a bar, not a per-step callback


@dataclass(frozen=True)
class Setup:
    battery: BatteryModel
    dispatcher: DispatcherConfig
    tariff: Tariff
    timezone: str
    array: PvArray
    exact: bool = False  # the planner's MILP fallback (see core.planner.plan); slow on a year
    # Measurement only (docs/dispatcher.md, "What the planner leaves"): the planner is told the
    # actual future of these ("load", "pv") instead of its forecast, to price each forecast's error.
    oracle: frozenset[str] = frozenset()
    # The config's flexible loads (``loads[]``); those ``flexible.py`` models are replayed.
    loads: tuple[LoadConfig, ...] = ()


@dataclass
class _FlexRecord:
    """What the flexible loads did so far, per data step: the planner's history of them."""

    loads: tuple[FlexibleLoad, ...]
    draw_w: np.ndarray  # (loads, data steps)
    on: np.ndarray  # (loads, data steps), bool


class _Forecaster:
    """Plan-resolution views of the data, computed once, sliced per decision."""

    def __init__(self, series: Series, setup: Setup) -> None:
        d = setup.dispatcher
        self.step = d.step_minutes * 60
        self.horizon = d.horizon_hours * 3600 // self.step
        frame = pd.DataFrame({"load": series.load_w, "pv": series.pv_w}, index=series.times)
        agg = frame.resample(f"{self.step}s", origin="epoch").mean()
        self.agg_times = agg.index
        self.agg_load = agg["load"].to_numpy()
        self.agg_pv = agg["pv"].to_numpy()
        extended = pd.date_range(agg.index[0], periods=len(agg) + self.horizon + 1, freq=f"{self.step}s")
        self.times = extended
        self.starts = extended.to_pydatetime()  # one conversion, not one per plan
        self.imp, self.exp = setup.tariff.prices(extended, self.step)
        self.local = extended.tz_convert(setup.timezone)
        self.setup = setup
        # Step numbers since the epoch, and the history as the live History keeps it: steps with no
        # data are absent (a scenario needing one is left out).
        self.keys0 = int(agg.index[0].value // 10**9 // self.step)
        present = np.isfinite(self.agg_load) & np.isfinite(self.agg_pv)
        self.keys = np.where(present, self.keys0 + np.arange(len(agg)), -1)
        self.hist_load = np.nan_to_num(self.agg_load)
        self.hist_pv = np.nan_to_num(self.agg_pv)
        # The plan step each data step falls in.
        self.agg_of = np.asarray((series.times - agg.index[0]) // pd.Timedelta(seconds=self.step), dtype=np.int64)

    @functools.cached_property
    def clear(self) -> np.ndarray:
        """Clear-sky PV over the data and a horizon beyond; needed only for a plan without history
        scenarios (the data's first week, or after a gap), so worked out the first time one is."""
        return clear_sky_pv_w(self.setup.array, self.times, self.step)

    def heat_pumps_w(self, k: int, data_k: int, record: _FlexRecord, memory: Memory) -> tuple[HeatPumpDraw, ...]:
        """Each heat pump's expected draw over the plan from plan step ``k`` (data step ``data_k``
        now), from what they drew in the completed plan steps of the last days, as live."""
        idx = slice(k, k + self.horizon)
        out: list[HeatPumpDraw] = []
        budgets = {b.load: b for b in memory.budgets}
        first = int(np.searchsorted(self.agg_of, k - RECENT_DAYS * 86400 // self.step))
        last = int(np.searchsorted(self.agg_of, k))  # data steps of completed plan steps only
        agg = self.agg_of[first:last]
        steps, where = np.unique(agg, return_inverse=True)
        for i, load in enumerate(record.loads):
            if not isinstance(load.config, HeatPumpLoad):
                continue
            budget = budgets.get(load.config.id)
            used = budget.used_wh if budget is not None else 0.0
            count = np.bincount(where, minlength=len(steps))
            draw = np.bincount(where, weights=record.draw_w[i, first:last], minlength=len(steps)) / np.maximum(count, 1)
            on = np.bincount(where, weights=record.on[i, first:last], minlength=len(steps)) / np.maximum(count, 1)
            expected = expected_draw_w(
                load.config,
                self.times[idx],
                self.step,
                self.setup.timezone,
                self.times[steps],
                draw,
                on,
                used,
            )
            out.append(HeatPumpDraw(load.config, expected, used, budget.feeding if budget is not None else False))
        return tuple(out)

    def inputs(self, k: int, soc: float, battery_now: float, heat_pump_w: np.ndarray | None = None) -> PlanInputs:
        # Plan from the current plan-step boundary: the step in force now is step 0. Only steps
        # before it are history (the live dispatcher's History.complete).
        idx = slice(k, k + self.horizon)
        steps = len(self.imp[idx])
        begin = max(0, k - HISTORY_DAYS * 86400 // self.step)
        load_s, pv_s = history_scenarios(
            self.keys[begin:k], self.hist_load[begin:k], self.hist_pv[begin:k], int(self.keys0 + k), steps, self.step
        )
        if self.setup.oracle and len(load_s):
            actual_load = np.nan_to_num(self.agg_load[idx])
            actual_pv = np.nan_to_num(self.agg_pv[idx])
            if len(actual_load) < steps:  # past the data's end: the last day again
                actual_load = np.resize(actual_load, steps)
                actual_pv = np.resize(actual_pv, steps)
            if "load" in self.setup.oracle:
                load_s = np.tile(actual_load, (len(load_s), 1))
            if "pv" in self.setup.oracle:
                pv_s = np.tile(actual_pv, (len(pv_s), 1))
        if len(load_s):
            load, pv = load_s.mean(axis=0), pv_s.mean(axis=0)
        else:
            past = slice(begin, k)
            load = load_profile_forecast(
                self.local[past],
                np.nan_to_num(self.agg_load[past]),
                self.local[idx],
                self.step,
                self.setup.dispatcher.default_daily_load_kwh,
            )
            recent = slice(max(0, k - 86400 // self.step), k)
            pv = self.clear[idx] * clearness(np.nan_to_num(self.agg_pv[recent]), self.clear[recent])
        if heat_pump_w is not None:
            # The data's load is the house without them: their draw is planned on its own.
            load = load + heat_pump_w
            if len(load_s):
                load_s = load_s + heat_pump_w
        d = self.setup.dispatcher
        return PlanInputs(
            start=self.starts[k],
            step_s=self.step,
            soc_pct=min(100.0, max(0.0, soc)),
            import_price=self.imp[idx],
            export_price=self.exp[idx],
            pv_w=pv,
            load_w=load,
            battery=self.setup.battery,
            switch_cost=d.switch_cost_per_change,
            cycle_cost_per_kwh=d.cycle_cost_per_kwh,
            terminal_value_factor=d.terminal_value_factor,
            export_limit_w=d.export_limit_w,
            import_limit_w=d.import_limit_w,
            battery_power_now_w=battery_now,
            battery_may_export=d.battery_may_export,
            quantum_w=d.quantum_w,
            load_scenarios_w=load_s if len(load_s) else None,
            pv_scenarios_w=pv_s if len(pv_s) else None,
        )


@dataclass
class Carry:
    """Everything one data step hands the next. Given the carry at a step, the steps from there
    run as they did in the whole run (``simulate`` is one span from the start; ``parallel.py``
    runs the planner's year in spans side by side and compares carries where they meet)."""

    soc_wh: float
    battery_w: float = 0.0
    previous_setpoint: float = 0.0
    memory: Memory = field(default_factory=Memory)
    schedule: Schedule | None = None
    last_plan_at: datetime | None = None
    sunrise_day: str | None = None  # the last local day whose first light was seen
    # The export tally's state (what the day held back, energy stored from the grid, the day);
    # its causes are the span's own result and are zero here.
    exports: ExportTally = field(default_factory=ExportTally)
    switched: dict[str, bool] = field(default_factory=dict)
    last_grid: float = 0.0


# Fields that measure the machine, not the state: a plan's solve time differs every run.
_MEASUREMENTS = frozenset({"solve_ms"})


def same_state(a: object, b: object) -> bool:
    """``a`` and ``b`` equal to the bit, arrays by element, dataclasses field by field (but for
    ``_MEASUREMENTS``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        return a.shape == b.shape and bool(np.array_equal(a, b))
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return all(
            same_state(getattr(a, f.name), getattr(b, f.name))
            for f in dataclasses.fields(a)
            if f.name not in _MEASUREMENTS
        )
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(same_state(a[key], b[key]) for key in a)
    if isinstance(a, tuple | list):
        assert isinstance(b, tuple | list)
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class Replay:
    """One policy over one series, everything that does not change from step to step computed
    once; ``run`` replays a span of steps from a carry."""

    def __init__(self, series: Series, policy: str, setup: Setup) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
        b = setup.battery
        d = setup.dispatcher
        self.series, self.policy, self.setup = series, policy, setup
        controlled = policy in ("self_use", "planner")
        every = flexible_loads(setup.loads, series)
        self.flex = every if controlled else tuple(f for f in every if isinstance(f, HeatPumpDemand))
        flex = self.flex
        # Without a controller (``none``, ``perfect``) a heat pump's switch follows its run window,
        # a step late as a decided switch acts (see the module docstring).
        self.fixed_on: dict[str, list[bool]] | None = None
        if not controlled:
            self.fixed_on = {}
            for f in flex:
                assert isinstance(f, HeatPumpDemand)
                on = unattended_on(f.config, series.times, setup.timezone, f.demand_w, series.step_s)
                self.fixed_on[f.config.id] = on.tolist()
        self.params = ControlParams.from_section(d, b, tuple(f.config for f in flex), timezone=setup.timezone)
        self.record = _FlexRecord(
            flex, np.zeros((len(flex), len(series.times))), np.zeros((len(flex), len(series.times)))
        )
        self.has_battery = policy != "none"
        self.planning = policy == "planner"
        self.forecaster = _Forecaster(series, setup) if self.planning else None
        self.mode = ModeState(DispatcherModeName.AUTO if self.planning else DispatcherModeName.SELF_USE)
        step_s = series.step_s
        self.dt_h = step_s / 3600.0
        self.imp_price, self.exp_price = setup.tariff.prices(series.times, step_s)
        local = series.times.tz_convert(setup.timezone)
        # Plain lists: indexing a pandas Index once per data step costs more than the step's control.
        self.month_keys = local.strftime("%Y-%m").tolist()
        self.day_keys = local.strftime("%Y-%m-%d").tolist()
        self.optimum: np.ndarray | None = None
        self.method = ""
        if policy == "perfect":
            load_w = np.asarray(series.load_w, dtype=float)
            for f in flex:
                assert isinstance(f, HeatPumpDemand) and self.fixed_on is not None
                load_w = load_w + np.where(self.fixed_on[f.config.id], f.demand_w, 0.0)
            best = perfect_foresight(
                series.times[0].to_pydatetime(),
                step_s,
                load_w,
                series.pv_w,
                self.imp_price,
                self.exp_price,
                b,
                b.pct(self.start_soc_wh()),
                export_limit_w=d.export_limit_w,
                import_limit_w=d.import_limit_w,
                battery_may_export=d.battery_may_export,
            )
            self.optimum, self.method = best.battery_w, best.method
        self.times = series.times.to_pydatetime()
        self.plan_step = self.forecaster.agg_of.tolist() if self.forecaster is not None else []
        self.load_list, self.pv_list = series.load_w.tolist(), series.pv_w.tolist()
        self.imp_list, self.exp_list = self.imp_price.tolist(), self.exp_price.tolist()
        # Where the planner drops its kept HiGHS instances (see ``resets``).
        self.resets = frozenset(resets(self.day_keys)) if self.planning else frozenset()

    def __len__(self) -> int:
        return len(self.times)

    def start_soc_wh(self) -> float:
        b = self.setup.battery
        return b.wh(max(b.reserve_pct, 50.0))

    def initial(self) -> Carry:
        """The state at the data's first step."""
        return Carry(soc_wh=self.start_soc_wh(), switched={f.config.id: False for f in self.flex})

    def guess(self) -> Carry:
        """A state to start a warm-up from, far from the data's start: the battery where it stops
        discharging (where an evening leaves it), idle, no plan."""
        b = self.setup.battery
        return Carry(
            soc_wh=b.wh(soc_limits.discharge_stops_at_pct(b)), switched={f.config.id: False for f in self.flex}
        )

    def run(
        self,
        begin: int,
        end: int,
        carry: Carry,
        result: PolicyResult,
        progress: Callable[[int], None] | None = None,
    ) -> Carry:
        """Replay steps ``begin`` to ``end`` (exclusive) from ``carry``, adding to ``result`` (its
        export tally starts from the carry's); the carry after the last step."""
        setup, b, d = self.setup, self.setup.battery, self.setup.dispatcher
        flex, record, forecaster, params, mode = self.flex, self.record, self.forecaster, self.params, self.mode
        has_battery, planning, optimum = self.has_battery, self.planning, self.optimum
        times, plan_step, month_keys, day_keys = self.times, self.plan_step, self.month_keys, self.day_keys
        load_list, pv_list, imp_list, exp_list = self.load_list, self.pv_list, self.imp_list, self.exp_list
        dt_h, resets_at, fixed_on = self.dt_h, self.resets, self.fixed_on
        result.exports = ExportTally(
            held=dict(carry.exports.held), grid_stored_kwh=carry.exports.grid_stored_kwh, day=carry.exports.day
        )
        soc_wh, battery_w, previous_setpoint = carry.soc_wh, carry.battery_w, carry.previous_setpoint
        memory, schedule, last_plan_at = carry.memory, carry.schedule, carry.last_plan_at
        sunrise_day, last_grid, switched = carry.sunrise_day, carry.last_grid, dict(carry.switched)
        nights: dict[str, dict[str, int]] = defaultdict(lambda: {"nights": 0, "made_it": 0})
        nights.update({month: dict(count) for month, count in result.nights_to_sunrise.items()})
        tally = FlexTally()
        throughput_kw = 0.0
        floor_wh = b.wh(b.floor_pct)
        # Live, the controller re-decides every meter reading (seconds), so a battery heading for the
        # reserve or the ceiling stops there; one decision per data step must not carry it past them
        # (a 30-minute step at 3 kW would otherwise spend 1.5 kWh below the reserve).
        stop_low_wh = b.wh(soc_limits.discharge_stops_at_pct(b))
        stop_high_wh = b.wh(soc_limits.charge_stops_at_pct(b))
        every_s = d.replan_minutes * 60
        if planning:
            forget_warm_starts()  # the same bill whatever this process planned before

        for k in range(begin, end):
            now = times[k]
            load, pv = load_list[k], pv_list[k]
            base = load  # the data's load: the house without its flexible loads
            readings: list[LoadReading] = []
            for i, f in enumerate(flex):
                on = switched[f.config.id] if fixed_on is None else fixed_on[f.config.id][k]
                draw = f.draw_w(k, on, last_grid)
                record.draw_w[i, k], record.on[i, k] = draw, on
                load += draw
                if f.config.meter is not None:
                    # Its CT as the controller reads it with the battery: over the step just ended, so
                    # the budget counts what the battery gave it then.
                    readings.append(LoadReading(f.config.id, record.draw_w[i, k - 1] if k else 0.0))
            month, day = month_keys[k], day_keys[k]
            result.monthly_days[month] += dt_h / 24.0
            numbers: Mapping[str, float] = {}
            if has_battery:
                soc_pct = b.pct(soc_wh)
                if day != sunrise_day and pv >= 50.0:
                    sunrise_day = day
                    if k > 0:
                        nights[month]["nights"] += 1
                        nights[month]["made_it"] += int(night_made(b, soc_pct))
                        result.soc_at_first_light_pct[day] = soc_pct
                if planning and forecaster is not None:
                    if k in resets_at:
                        forget_warm_starts()
                    reason = should_replan(now, last_plan_at, every_s)
                    if reason is not None:
                        ak = plan_step[k]
                        hps = forecaster.heat_pumps_w(ak, k, record, memory) if flex else ()
                        hp_w = np.sum([hp.draw_w for hp in hps], axis=0) if hps else None
                        inputs = forecaster.inputs(ak, soc_pct, battery_w, hp_w)
                        if inputs.steps > 0:
                            # The next plan comes before this one's step 1 begins whenever the plan
                            # is due again within its step 0: only that step can be acted on.
                            acted = (now - inputs.start).total_seconds() + every_s <= inputs.step_s
                            hps = tuple(replace(hp, draw_w=hp.draw_w[: inputs.steps]) for hp in hps)
                            schedule = plan_with_heat_pumps(
                                inputs, hps, setup.timezone, plan, exact=setup.exact, first_step_only=acted
                            )
                            result.plans += 1
                        last_plan_at = now
                if optimum is not None:
                    # The yardstick's own decision: what it does is what it planned.
                    setpoint = float(optimum[k])
                    numbers = {"goal_w": setpoint, "planned_grid_w": load - pv - setpoint}
                else:
                    snap = Snapshot(
                        now=now,
                        soc_pct=soc_pct,
                        battery_w=battery_w,
                        grid_w=load - pv - battery_w,
                        pv_w=pv,
                        mode=mode,
                        loads=tuple(readings),
                        inverter_at=now,
                        meter_at=now,
                    )
                    decision, memory = control(snap, schedule, memory, params)
                    switched.update({name: bool(on) for name, on in decision.loads_on.items() if name in switched})
                    numbers = decision.numbers
                    setpoint = decision.battery_w
                if setpoint != previous_setpoint:
                    result.setpoint_changes += 1
                    previous_setpoint = setpoint
                # The battery runs the step at the setpoint unless its energy runs out first.
                before = battery_w
                if setpoint < 0:
                    top_wh = stop_high_wh if soc_wh < stop_high_wh else b.capacity_wh
                    room = max(0.0, top_wh - soc_wh)
                    charge = min(-setpoint, room / (b.charge_efficiency * dt_h))
                    battery_w = -charge
                    soc_wh += charge * b.charge_efficiency * dt_h
                    result.charge_kwh += charge * dt_h / 1000.0
                else:
                    bottom_wh = stop_low_wh if soc_wh > stop_low_wh else floor_wh
                    available = max(0.0, soc_wh - bottom_wh)
                    discharge = min(setpoint, available * b.discharge_efficiency / dt_h)
                    battery_w = discharge
                    soc_wh -= discharge / b.discharge_efficiency * dt_h
                    result.discharge_kwh += discharge * dt_h / 1000.0
                throughput_kw += abs(battery_w - before) / 1000.0
            grid = load - pv - battery_w
            last_grid = grid
            # The battery's share of a flexible load: its discharge beyond what the house without them
            # needed (after PV), shared out in the loads' order.
            spare = max(0.0, battery_w - max(0.0, base - pv))
            for i, f in enumerate(flex):
                fed = min(record.draw_w[i, k], spare)
                spare -= fed
                tally.add(f.config.id, record.draw_w[i, k], fed, dt_h)
            imp_kwh = max(grid, 0.0) * dt_h / 1000.0
            exp_kwh = max(-grid, 0.0) * dt_h / 1000.0
            cost = imp_kwh * imp_list[k] - exp_kwh * exp_list[k]
            result.cost += cost
            result.monthly_cost[month] += cost
            result.import_kwh += imp_kwh
            result.export_kwh += exp_kwh
            result.load_kwh += load * dt_h / 1000.0
            result.pv_kwh += pv * dt_h / 1000.0
            step = ExportStep(
                exp_kwh,
                dt_h,
                battery_w,
                soc_wh,
                goal_w=numbers.get("goal_w"),
                planned_grid_w=numbers.get("planned_grid_w"),
                charge_max_w=numbers.get("charge_max_w"),
                has_battery=has_battery,
                import_w=max(grid, 0.0),
            )
            result.track_export(day, step, b)
            if progress is not None and (k + 1 - begin) % PROGRESS_EVERY == 0:
                progress(PROGRESS_EVERY)
        if progress is not None and (end - begin) % PROGRESS_EVERY:
            progress((end - begin) % PROGRESS_EVERY)
        result.switching_cost += d.switch_cost_per_change * throughput_kw
        if has_battery:
            result.nights_to_sunrise = dict(nights)
        result.flexible = tally.as_dict()
        if self.method:
            result.method = self.method
        tallied = result.exports
        return Carry(
            soc_wh=soc_wh,
            battery_w=battery_w,
            previous_setpoint=previous_setpoint,
            memory=memory,
            schedule=schedule,
            last_plan_at=last_plan_at,
            sunrise_day=sunrise_day,
            exports=ExportTally(held=dict(tallied.held), grid_stored_kwh=tallied.grid_stored_kwh, day=tallied.day),
            switched=switched,
            last_grid=last_grid,
        )

    def finish(self, result: PolicyResult, *, last: bool = True) -> PolicyResult:
        """The figures made from a span's sums; ``last``: the span ends the data (what the day held
        back is settled, and ``self_use`` gets its greedy yardstick over the whole data)."""
        b, d, series = self.setup.battery, self.setup.dispatcher, self.series
        if last:
            result.settle_exports()
        if last and self.policy == "self_use":
            greedy = greedy_self_use(series.load_w, series.pv_w, b, max(b.reserve_pct, 50.0), series.step_s)
            grid = series.load_w - series.pv_w - greedy
            result.greedy_cost = float(
                np.sum(np.where(grid > 0, grid * self.imp_price, grid * self.exp_price)) * self.dt_h / 1000.0
            )
        result.battery_cycles = result.discharge_kwh * 1000.0 / b.capacity_wh if self.has_battery else 0.0
        result.wear_cost = d.cycle_cost_per_kwh / 2.0 * (result.charge_kwh + result.discharge_kwh)
        return result


def resets(day_keys: Sequence[str]) -> list[int]:
    """The data steps where the planner drops its kept HiGHS instances: the first step of every
    local month after the data's first. A warm start can pick another of two equally cheap plans,
    so a span that starts at one of these plans exactly as the whole run did."""
    return [k for k in range(1, len(day_keys)) if day_keys[k][:7] != day_keys[k - 1][:7]]


def simulate(
    series: Series,
    policy: str,
    setup: Setup,
    progress: Callable[[int], None] | None = None,
) -> PolicyResult:
    """Run one policy over the whole series."""
    replay = Replay(series, policy, setup)
    result = PolicyResult(policy)
    replay.run(0, len(replay), replay.initial(), result, progress)
    return replay.finish(result)
