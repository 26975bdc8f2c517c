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

Flexible loads (``flexible.py``; a heat pump so far) run under the policies the dispatcher's
controller runs, ``self_use`` and ``planner``: they draw on top of the data's load, the controller
switches them and spends their budgets as live, the planner plans their expected draw
(``core.heat_pump.expected_draw_w`` on the draw simulated so far), and each result reports their
energy and the battery's share of it (``flexible``). ``none`` and ``perfect`` replay the data's load
alone: compare their bills with that in mind.

Every policy also reports, beside its bill and never mixed into it, the planner's own wear figure
(``cycle_cost_per_kwh`` on the energy through the battery) and switching figure
(``switch_cost_per_change`` per kW of change in battery power from one data step to the next).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

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
from services.dispatcher.core.heat_pump import RECENT_DAYS, expected_draw_w
from services.dispatcher.core.planner import PlanInputs, Schedule, forget_warm_starts, plan
from services.dispatcher.core.replan import should_replan
from services.dispatcher.core.snapshot import LoadReading, ModeState, Snapshot
from shared.config import LoadConfig
from shared.config.dispatcher import DispatcherConfig
from shared.config.loads import HeatPumpLoad
from shared.energy import soc_limits
from shared.energy.accounting import ExportStep, PolicyResult, night_made
from shared.energy.battery import BatteryModel
from shared.energy.tariff import Tariff
from shared.messages import DispatcherModeName

from .data import Series
from .flexible import FlexibleLoad, FlexTally, flexible_loads
from .greedy import greedy_self_use
from .perfect import perfect_foresight

__all__ = ["POLICIES", "Setup", "simulate"]

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
        self.clear = clear_sky_pv_w(setup.array, extended, self.step)
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

    def heat_pumps_w(self, k: int, data_k: int, record: _FlexRecord, memory: Memory) -> np.ndarray:
        """The heat pumps' expected draw over the plan from plan step ``k`` (data step ``data_k``
        now), from what they drew in the completed plan steps of the last days, as live."""
        idx = slice(k, k + self.horizon)
        out = np.zeros(len(self.imp[idx]))
        used = {b.load: b.used_wh for b in memory.budgets}
        first = int(np.searchsorted(self.agg_of, k - RECENT_DAYS * 86400 // self.step))
        last = int(np.searchsorted(self.agg_of, k))  # data steps of completed plan steps only
        agg = self.agg_of[first:last]
        steps, where = np.unique(agg, return_inverse=True)
        for i, load in enumerate(record.loads):
            if not isinstance(load.config, HeatPumpLoad):
                continue
            count = np.bincount(where, minlength=len(steps))
            draw = np.bincount(where, weights=record.draw_w[i, first:last], minlength=len(steps)) / np.maximum(count, 1)
            on = np.bincount(where, weights=record.on[i, first:last], minlength=len(steps)) / np.maximum(count, 1)
            out += expected_draw_w(
                load.config,
                self.times[idx],
                self.step,
                self.setup.timezone,
                self.times[steps],
                draw,
                on,
                used.get(load.config.id, 0.0),
            )
        return out

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


def simulate(
    series: Series,
    policy: str,
    setup: Setup,
    progress: Callable[[int], None] | None = None,
) -> PolicyResult:
    """Run one policy over the whole series."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    b = setup.battery
    d = setup.dispatcher
    flex = flexible_loads(setup.loads, series) if policy in ("self_use", "planner") else ()
    params = ControlParams.from_section(d, b, tuple(f.config for f in flex), timezone=setup.timezone)
    record = _FlexRecord(flex, np.zeros((len(flex), len(series.times))), np.zeros((len(flex), len(series.times))))
    switched = {f.config.id: False for f in flex}
    tally = FlexTally()
    last_grid = 0.0
    has_battery = policy != "none"
    planning = policy == "planner"
    forecaster = _Forecaster(series, setup) if planning else None
    if planning:
        forget_warm_starts()  # the same bill whatever this process planned before
    mode = ModeState(DispatcherModeName.AUTO if planning else DispatcherModeName.SELF_USE)
    step_s = series.step_s
    dt_h = step_s / 3600.0
    imp_price, exp_price = setup.tariff.prices(series.times, step_s)
    local = series.times.tz_convert(setup.timezone)
    # Plain lists: indexing a pandas Index once per data step costs more than the step's control.
    month_keys = local.strftime("%Y-%m").tolist()
    day_keys = local.strftime("%Y-%m-%d").tolist()

    result = PolicyResult(policy)
    soc_wh = b.wh(max(b.reserve_pct, 50.0))
    optimum: np.ndarray | None = None
    if policy == "perfect":
        best = perfect_foresight(
            series.times[0].to_pydatetime(),
            step_s,
            series.load_w,
            series.pv_w,
            imp_price,
            exp_price,
            b,
            b.pct(soc_wh),
            export_limit_w=d.export_limit_w,
            import_limit_w=d.import_limit_w,
            battery_may_export=d.battery_may_export,
        )
        optimum, result.method = best.battery_w, best.method
    times = series.times.to_pydatetime()
    plan_step = forecaster.agg_of.tolist() if forecaster is not None else []  # a list: read per step
    load_list, pv_list = series.load_w.tolist(), series.pv_w.tolist()
    imp_list, exp_list = imp_price.tolist(), exp_price.tolist()
    throughput_kw = 0.0
    battery_w = 0.0
    memory = Memory()
    schedule: Schedule | None = None
    last_plan_at = None
    sunrise_seen: set[str] = set()
    nights: dict[str, dict[str, int]] = defaultdict(lambda: {"nights": 0, "made_it": 0})
    floor_wh = b.wh(b.floor_pct)
    # Live, the controller re-decides every meter reading (seconds), so a battery heading for the
    # reserve or the ceiling stops there; one decision per data step must not carry it past them
    # (a 30-minute step at 3 kW would otherwise spend 1.5 kWh below the reserve).
    stop_low_wh = b.wh(soc_limits.discharge_stops_at_pct(b))
    stop_high_wh = b.wh(soc_limits.charge_stops_at_pct(b))
    every_s = d.replan_minutes * 60
    previous_setpoint = 0.0

    for k in range(len(times)):
        now = times[k]
        load, pv = load_list[k], pv_list[k]
        base = load  # the data's load: the house without its flexible loads
        readings: list[LoadReading] = []
        for i, f in enumerate(flex):
            on = switched[f.config.id]
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
            if day not in sunrise_seen and pv >= 50.0:
                sunrise_seen.add(day)
                if k > 0:
                    nights[month]["nights"] += 1
                    nights[month]["made_it"] += int(night_made(b, soc_pct))
                    result.soc_at_first_light_pct[day] = soc_pct
            if planning and forecaster is not None:
                reason = should_replan(now, last_plan_at, every_s)
                if reason is not None:
                    ak = plan_step[k]
                    hp_w = forecaster.heat_pumps_w(ak, k, record, memory) if flex else None
                    inputs = forecaster.inputs(ak, soc_pct, battery_w, hp_w)
                    if inputs.steps > 0:
                        # The next plan comes before this one's step 1 begins whenever the plan
                        # is due again within its step 0: only that step can be acted on.
                        acted = (now - inputs.start).total_seconds() + every_s <= inputs.step_s
                        schedule = plan(inputs, exact=setup.exact, first_step_only=acted)
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
        if progress is not None and (k + 1) % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    result.settle_exports()
    if policy == "self_use":
        greedy = greedy_self_use(series.load_w, series.pv_w, b, max(b.reserve_pct, 50.0), step_s)
        grid = series.load_w - series.pv_w - greedy
        result.greedy_cost = float(np.sum(np.where(grid > 0, grid * imp_price, grid * exp_price)) * dt_h / 1000.0)
    if progress is not None and len(times) % PROGRESS_EVERY:
        progress(len(times) % PROGRESS_EVERY)
    result.battery_cycles = result.discharge_kwh * 1000.0 / b.capacity_wh if has_battery else 0.0
    result.wear_cost = d.cycle_cost_per_kwh / 2.0 * (result.charge_kwh + result.discharge_kwh)
    result.switching_cost = d.switch_cost_per_change * throughput_kw
    result.nights_to_sunrise = dict(nights) if has_battery else {}
    result.flexible = tally.as_dict()
    return result
