"""The SoC band, in one place: where the dispatcher stops discharging, stops charging, tops up.

The dispatcher's planner bounds its SoC variables with it, its controller clamps setpoints and ends
forced modes with it, its loads arbiter asks it whether the battery can still take surplus, and the
recorder's statistics ask it where the battery stops discharging overnight. Levels are percent of
``BatteryModel.capacity_wh``:

* ``floor_pct`` (``min_soc_pct``): the hard bottom. Below it the mains tops the battery up, in every
  mode, until ``floor_pct + margin``.
* ``reserve_pct`` (``reserve_soc_pct``): kept for power cuts; no discharge at or below it (in
  mode ``off`` the inverter runs on its own, down to the floor).
* ``ceiling_pct`` (``max_soc_pct``): no charge at or above it.
"""

from __future__ import annotations

from shared.energy.battery import BatteryModel

__all__ = [
    "BAND_HYSTERESIS_PCT",
    "band_stops",
    "charge_stops_at_pct",
    "discharge_stops_at_pct",
    "may_charge",
    "may_discharge",
    "plan_band_wh",
    "topping_up",
]


def may_discharge(battery: BatteryModel, soc_pct: float) -> bool:
    return soc_pct > battery.reserve_pct


def may_charge(battery: BatteryModel, soc_pct: float) -> bool:
    return soc_pct < battery.ceiling_pct


# Once the reserve (the ceiling) has stopped the discharge (the charge), the SoC must move this far
# back inside the band before it resumes: a SoC reported to a fraction of a percent, or rebounding
# after the battery rests, would otherwise stop and start it (and hand control to the inverter and
# take it back) on every reading.
BAND_HYSTERESIS_PCT = 1.0


def band_stops(
    battery: BatteryModel, soc_pct: float, stopped: tuple[bool, bool], margin_pct: float = BAND_HYSTERESIS_PCT
) -> tuple[bool, bool]:
    """(discharge stopped at the reserve, charge stopped at the ceiling) now, given the same pair at
    the last decision: stopped at the edge (``may_discharge`` / ``may_charge`` false), and staying
    stopped until the SoC is ``margin_pct`` back inside the band."""
    low_was, high_was = stopped
    low = not may_discharge(battery, soc_pct) or (low_was and soc_pct < battery.reserve_pct + margin_pct)
    high = not may_charge(battery, soc_pct) or (high_was and soc_pct > battery.ceiling_pct - margin_pct)
    return low, high


def topping_up(battery: BatteryModel, soc_pct: float, was: bool, margin_pct: float) -> bool:
    """Mains top-up: on below the floor, off again at floor + margin (hysteresis, so it does not
    chatter around the floor)."""
    if soc_pct < battery.floor_pct:
        return True
    if soc_pct >= battery.floor_pct + margin_pct:
        return False
    return was


def charge_stops_at_pct(battery: BatteryModel, target_pct: float | None = None) -> float:
    """Where charging toward ``target_pct`` (None: full) really stops: never above the ceiling."""
    return min(target_pct if target_pct is not None else 100.0, battery.ceiling_pct)


def discharge_stops_at_pct(battery: BatteryModel, target_pct: float | None = None, *, mode_off: bool = False) -> float:
    """Where discharging toward ``target_pct`` (None: empty) really stops: never below the reserve,
    or below the floor in mode ``off``."""
    bottom = battery.floor_pct if mode_off else battery.reserve_pct
    return max(target_pct if target_pct is not None else 0.0, bottom)


def plan_band_wh(battery: BatteryModel, soc_pct: float) -> tuple[float, float]:
    """The stored energy a plan may move within, in Wh: reserve to ceiling, widened to include the
    SoC now (a battery already below the reserve or above the ceiling is not an infeasible plan)."""
    now_wh = battery.wh(soc_pct)
    return min(battery.wh(battery.reserve_pct), now_wh), max(battery.wh(battery.ceiling_pct), now_wh)
