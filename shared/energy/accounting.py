"""What a battery did to a house's energy and money over a stretch of time, and why energy left it.

One tally for the backtest (a policy replayed over a year) and the recorder's daily statistics
(what the real house did), so that both count exports, self sufficiency and cost the same way.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from . import soc_limits
from .battery import BatteryModel

__all__ = [
    "EXPORT_CAUSES",
    "LEGACY_EXPORT_CAUSES",
    "SUNRISE_MARGIN_PCT",
    "ExportStep",
    "ExportTally",
    "PolicyResult",
    "export_causes",
    "legacy_causes",
    "merge",
    "night_made",
]

# Why energy left the house, in the seed owner's words ("60 kWh exported in a month: about 10 by a
# wrong profile, 20 by ramping and flipping, 30 by a full battery"). They add up to the export.
#   battery_full    the battery was at its ceiling, or reached it later that day anyway: nowhere to
#                   put the surplus;
#   flip_flop       the controller lagged or reversed: battery energy exported that the mode did not
#                   ask for, or surplus it asked to store and did not yet (dwell, ramp, deadband);
#   forecast_error  exported only because the plan's forecast was wrong: surplus the plan did not
#                   expect, and export by a full battery still holding energy it bought from the
#                   grid; what a plan with perfect foresight would have stored (see ExportTally);
#   planned         the plan (or the mode a person chose) meant to export it: for money;
#   power_limit     the battery was already charging as fast as it may (device, BMS);
#   no_battery      there is no battery.
EXPORT_CAUSES = ("battery_full", "flip_flop", "forecast_error", "planned", "power_limit", "no_battery")
# The first, coarser split, kept under its names for existing readers: each is a sum of new causes.
LEGACY_EXPORT_CAUSES: dict[str, tuple[str, ...]] = {
    "battery_full": ("battery_full",),
    "mode_flip": ("flip_flop",),
    "policy": ("planned", "forecast_error"),
    "power_limit": ("power_limit",),
    "no_battery": ("no_battery",),
}
# A night "made it" when the battery still had this much above where it stops discharging at first
# light: a battery parked at the reserve reads within a point of it.
SUNRISE_MARGIN_PCT = 1.0
# Within this share of capacity of the ceiling the battery counts as full.
FULL_MARGIN = 0.005


def night_made(battery: BatteryModel, soc_at_first_light_pct: float, *, mode_off: bool = False) -> bool:
    """The battery reached first light with charge above where it stops discharging (the reserve;
    the floor in mode ``off``), by more than ``SUNRISE_MARGIN_PCT``."""
    return soc_at_first_light_pct > soc_limits.discharge_stops_at_pct(battery, mode_off=mode_off) + SUNRISE_MARGIN_PCT


def legacy_causes(causes: dict[str, float]) -> dict[str, float]:
    """The first split (``mode_flip``, ``policy``, ...) from the seed's words; adds up the same."""
    return {old: sum(causes.get(new, 0.0) for new in news) for old, news in LEGACY_EXPORT_CAUSES.items()}


@dataclass(frozen=True)
class ExportStep:
    """One stretch of ``dt_h`` hours in which ``export_kwh`` left the house, and what the battery,
    the controller and the plan were doing. Powers follow the AC-bus sign (battery discharge +,
    grid import +)."""

    export_kwh: float
    dt_h: float
    battery_w: float
    soc_wh: float
    goal_w: float | None = None  # what the mode or plan asked of the battery before dwell, ramp, deadband
    planned_grid_w: float | None = None  # the plan's grid for this step (export -); None: no plan
    charge_max_w: float | None = None  # how fast the battery could charge then; None: the model's limit
    has_battery: bool = True
    import_w: float = 0.0  # grid import during the step (a battery charging from it holds grid energy)


def full(b: BatteryModel, soc_wh: float) -> bool:
    return soc_wh >= b.wh(b.ceiling_pct) - FULL_MARGIN * b.capacity_wh


def export_causes(step: ExportStep, b: BatteryModel) -> dict[str, float]:
    """Split one step's export (kWh) into ``EXPORT_CAUSES``; the parts add up to ``export_kwh``.

    This is the step on its own; ``ExportTally`` also looks at the rest of the day, where surplus
    the battery did not take while it had room counts as ``battery_full`` once it filled anyway.
    """
    settled, unstored = _split(step, b)
    return {cause: settled[cause] + unstored[cause] for cause in EXPORT_CAUSES}


def _split(step: ExportStep, b: BatteryModel) -> tuple[dict[str, float], dict[str, float]]:
    """(causes that stand, causes of surplus the battery had room and power for but did not take)."""
    settled = dict.fromkeys(EXPORT_CAUSES, 0.0)
    unstored = dict.fromkeys(EXPORT_CAUSES, 0.0)
    exp = max(0.0, step.export_kwh)
    if not step.has_battery:
        settled["no_battery"] = exp
        return settled, unstored
    kwh = step.dt_h / 1000.0  # W over the step -> kWh
    planned_left = max(0.0, -step.planned_grid_w) * kwh if step.planned_grid_w is not None else 0.0

    # Battery energy that went out to the grid. What it gave beyond the goal went out first: the
    # controller overshot or had not yet reversed (flip_flop); any more was asked for, by a plan or
    # mode that discharges into the export (planned).
    from_battery = min(exp, max(step.battery_w, 0.0) * kwh)
    goal = max(step.goal_w, 0.0) if step.goal_w is not None else 0.0
    overshoot = min(from_battery, max(0.0, step.battery_w - goal) * kwh)
    meant = from_battery - overshoot
    settled["flip_flop"] += overshoot
    settled["planned"] += meant
    planned_left = max(0.0, planned_left - meant)
    rest = exp - from_battery
    if rest <= 0:
        return settled, unstored

    # PV surplus the battery did not take.
    if full(b, step.soc_wh):
        settled["battery_full"] += rest
        return settled, unstored
    charge_max = b.max_charge_w if step.charge_max_w is None else min(b.max_charge_w, step.charge_max_w)
    charging = max(-step.battery_w, 0.0)
    if charging >= charge_max - 1.0:
        settled["power_limit"] += rest
        return settled, unstored
    if step.goal_w is not None:
        # Asked to store more than it did: the controller lagged (ramp, dwell, deadband, reversal).
        lag = min(rest, max(0.0, max(-step.goal_w, 0.0) - charging) * kwh)
        unstored["flip_flop"] += lag
        rest -= lag
    if step.planned_grid_w is None:
        # No plan: the mode in force chose not to store it (hold, a load ranked above the battery);
        # with no controller data at all, the controller did not follow the surplus.
        unstored["planned" if step.goal_w is not None else "flip_flop"] += rest
        return settled, unstored
    meant = min(rest, planned_left)
    unstored["planned"] += meant
    unstored["forecast_error"] += rest - meant
    return settled, unstored


@dataclass
class ExportTally:
    """Export causes over a stretch of steps, fed every step in time order, ``day`` the local date.

    Two things a single step cannot tell are settled here:

    * surplus the battery had room and power for but did not take (``flip_flop`` by lag,
      ``planned``, ``forecast_error``) is held until the day ends: if the battery reaches its
      ceiling later that day, storing it would only have filled the battery sooner and as much
      would have gone out later, so it counts as ``battery_full``;
    * export because the battery was full, while it still held energy it had charged from the grid
      (a night charge for a dull day that came out sunny), is ``forecast_error``: with perfect
      foresight the plan would not have bought that energy and would have stored the sun's instead.
    """

    causes: dict[str, float] = field(default_factory=lambda: dict.fromkeys(EXPORT_CAUSES, 0.0))
    held: dict[str, float] = field(default_factory=lambda: dict.fromkeys(EXPORT_CAUSES, 0.0))
    grid_stored_kwh: float = 0.0  # energy charged from the grid and not yet discharged
    day: str | None = None

    def add(self, day: str, step: ExportStep, b: BatteryModel) -> None:
        """One step (``export_kwh`` 0 when nothing went out); ``soc_wh`` is the state after it."""
        if day != self.day:
            self.settle()
            self.day = day
        kwh = step.dt_h / 1000.0
        from_grid = min(max(-step.battery_w, 0.0), max(step.import_w, 0.0)) * kwh
        self.grid_stored_kwh = max(0.0, self.grid_stored_kwh + from_grid - max(step.battery_w, 0.0) * kwh)
        if step.export_kwh > 0:
            settled, unstored = _split(step, b)
            self._full(settled.pop("battery_full"))
            for cause, value in settled.items():
                self.causes[cause] += value
            for cause in EXPORT_CAUSES:
                self.held[cause] += unstored[cause]
        if step.has_battery and full(b, step.soc_wh):
            self._full(sum(self.held.values()))
            self.held = dict.fromkeys(EXPORT_CAUSES, 0.0)

    def _full(self, kwh: float) -> None:
        """Exported with the battery full: as much as it held from the grid is the forecast's error."""
        displaced = min(kwh, self.grid_stored_kwh)
        self.grid_stored_kwh -= displaced
        self.causes["forecast_error"] += displaced
        self.causes["battery_full"] += kwh - displaced

    def settle(self) -> None:
        """The day (or the data) is over: what was held keeps its own cause."""
        for cause, kwh in self.held.items():
            self.causes[cause] += kwh
        self.held = dict.fromkeys(EXPORT_CAUSES, 0.0)


@dataclass
class PolicyResult:
    policy: str
    cost: float = 0.0
    import_kwh: float = 0.0
    export_kwh: float = 0.0
    load_kwh: float = 0.0
    pv_kwh: float = 0.0
    charge_kwh: float = 0.0
    discharge_kwh: float = 0.0
    battery_cycles: float = 0.0
    plans: int = 0
    setpoint_changes: int = 0
    wear_cost: float = 0.0  # beside the bill, never in it: cycle_cost_per_kwh on the throughput
    switching_cost: float = 0.0  # beside the bill: switch_cost_per_change per kW of change
    method: str = ""  # the yardstick's solution method (backtest ``perfect``)
    greedy_cost: float | None = None  # backtest ``self_use``: a plain greedy self-use's bill, same data
    exports: ExportTally = field(default_factory=ExportTally)
    monthly_cost: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    monthly_days: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    nights_to_sunrise: dict[str, dict[str, int]] = field(default_factory=dict)
    soc_at_first_light_pct: dict[str, float] = field(default_factory=dict)  # per night, by local date
    # Backtest: per flexible load, kWh drawn, from the battery, from the grid or PV.
    flexible: dict[str, dict[str, float]] = field(default_factory=dict)
    # Backtest: spans of the data replayed side by side and merged (``merge``), and how many of
    # them were replayed again from the state the span before really left (see backtest.parallel).
    spans: int = 1
    spans_rerun: int = 0

    @property
    def export_causes_kwh(self) -> dict[str, float]:
        """Export by cause in the seed's words (``EXPORT_CAUSES``), settled so far."""
        return dict(self.exports.causes)

    @property
    def export_by_cause_kwh(self) -> dict[str, float]:
        """The first, coarser split (``mode_flip``, ``policy``, ...), for existing readers."""
        return legacy_causes(self.export_causes_kwh)

    def track_export(self, day: str, step: ExportStep, battery: BatteryModel) -> None:
        """Every step in time order (see ``ExportTally``); ``settle_exports`` at the end."""
        self.exports.add(day, step, battery)

    def settle_exports(self) -> None:
        self.exports.settle()

    @property
    def self_sufficiency_pct(self) -> float:
        return 0.0 if self.load_kwh <= 0 else max(0.0, 100.0 * (1 - self.import_kwh / self.load_kwh))

    def as_dict(self) -> dict[str, Any]:
        return {
            "cost": round(self.cost, 4),
            "import_kwh": round(self.import_kwh, 3),
            "export_kwh": round(self.export_kwh, 3),
            "load_kwh": round(self.load_kwh, 3),
            "pv_kwh": round(self.pv_kwh, 3),
            "self_sufficiency_pct": round(self.self_sufficiency_pct, 2),
            "battery_cycles": round(self.battery_cycles, 2),
            "battery_charge_kwh": round(self.charge_kwh, 3),
            "battery_discharge_kwh": round(self.discharge_kwh, 3),
            "plans": self.plans,
            "setpoint_changes": self.setpoint_changes,
            "wear_cost": round(self.wear_cost, 4),
            "switching_cost": round(self.switching_cost, 4),
            **({"method": self.method} if self.method else {}),
            **(
                {
                    "greedy_self_use_cost": round(self.greedy_cost, 4),
                    "controller_effect_cost": round(self.cost - self.greedy_cost, 4),
                }
                if self.greedy_cost is not None
                else {}
            ),
            "export_causes_kwh": {k: round(v, 3) for k, v in self.export_causes_kwh.items()},
            "export_by_cause_kwh": {k: round(v, 3) for k, v in self.export_by_cause_kwh.items()},
            "nights_to_sunrise": self.nights_to_sunrise,
            "soc_at_first_light_pct": {k: round(v, 2) for k, v in sorted(self.soc_at_first_light_pct.items())},
            "monthly_cost": {k: round(v, 4) for k, v in sorted(self.monthly_cost.items())},
            **({"flexible": self.flexible} if self.flexible else {}),
            **({"spans": self.spans, "spans_rerun": self.spans_rerun} if self.spans > 1 else {}),
        }


# How ``merge`` combines each field of consecutive spans' results (a test holds it to every field).
_SUMMED = (
    "cost",
    "import_kwh",
    "export_kwh",
    "load_kwh",
    "pv_kwh",
    "charge_kwh",
    "discharge_kwh",
    "battery_cycles",
    "plans",
    "setpoint_changes",
    "wear_cost",
    "switching_cost",
    "spans",
    "spans_rerun",
)
_MERGED = (
    *_SUMMED,
    "policy",
    "method",
    "greedy_cost",
    "exports",
    "monthly_cost",
    "monthly_days",
    "nights_to_sunrise",
    "soc_at_first_light_pct",
    "flexible",
)


def merge(parts: list[PolicyResult]) -> PolicyResult:
    """One result from the results of consecutive spans of the same data, in time order, as one
    run over all of it would have tallied (floats summed in another order: equal to rounding).

    Sums add up; per-month and per-night tallies add up by key; the export tally's causes add up
    and what it holds back is the last span's (each span's tally starts from the one before's);
    a span's nights at first light are its own, so two spans giving the same night is an error, and
    so is more than one span reporting a whole-data figure (``greedy_cost``, ``method``).
    """
    if not parts:
        raise ValueError("merge needs at least one result")
    policies = {p.policy for p in parts}
    if len(policies) != 1:
        raise ValueError(f"merge of different policies: {sorted(policies)}")
    out = PolicyResult(parts[0].policy)
    for name in _SUMMED:
        setattr(out, name, sum(getattr(p, name) for p in parts))
    for name in ("method", "greedy_cost"):
        given = {getattr(p, name) for p in parts} - {"", None}
        if len(given) > 1:
            raise ValueError(f"merge: spans disagree on {name}: {sorted(map(str, given))}")
        if given:
            setattr(out, name, given.pop())
    out.exports = ExportTally(
        causes={cause: sum(p.exports.causes.get(cause, 0.0) for p in parts) for cause in EXPORT_CAUSES},
        held=dict(parts[-1].exports.held),
        grid_stored_kwh=parts[-1].exports.grid_stored_kwh,
        day=parts[-1].exports.day,
    )
    for p in parts:
        for month, value in p.monthly_cost.items():
            out.monthly_cost[month] += value
        for month, value in p.monthly_days.items():
            out.monthly_days[month] += value
        for month, counts in p.nights_to_sunrise.items():
            into = out.nights_to_sunrise.setdefault(month, {})
            for key, count in counts.items():
                into[key] = into.get(key, 0) + count
        for day, pct in p.soc_at_first_light_pct.items():
            if day in out.soc_at_first_light_pct:
                raise ValueError(f"merge: the night before {day} is in two spans")
            out.soc_at_first_light_pct[day] = pct
        for load, figures in p.flexible.items():
            into_f = out.flexible.setdefault(load, {})
            for key, value in figures.items():
                into_f[key] = into_f.get(key, 0.0) + value
    return out
