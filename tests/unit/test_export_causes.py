"""Export by cause in the seed's words (``shared/energy/accounting.py``): a step table for the split,
the day's settlement, the seed's month as a house, and the backtest against perfect foresight."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.backtest.data import Series, read_series
from services.backtest.engine import Setup, simulate
from services.dispatcher.core.forecast import PvArray
from services.recorder.stats import daily_stats, day_bounds, monthly
from shared.config.dispatcher import DispatcherConfig
from shared.config.tariff import TariffConfig
from shared.energy.accounting import (
    EXPORT_CAUSES,
    ExportStep,
    ExportTally,
    PolicyResult,
    export_causes,
    legacy_causes,
)
from shared.energy.battery import BatteryModel
from shared.energy.tariff import tariff_from_config

B = BatteryModel(capacity_wh=10_000.0, max_charge_w=3000.0, max_discharge_w=3000.0, floor_pct=10.0,
                 reserve_pct=20.0, ceiling_pct=100.0)  # fmt: skip
HALF = B.wh(50.0)
H = 1.0  # one-hour steps: W read as Wh


def split(**kw: float | None) -> dict[str, float]:
    return {k: round(v, 6) for k, v in export_causes(ExportStep(**kw), B).items() if v}  # type: ignore[arg-type]


# (what happened, cause -> kWh). Powers in W over one hour.
STEPS = [
    # No battery: all of it.
    ({"export_kwh": 2.0, "dt_h": H, "battery_w": 0.0, "soc_wh": 0.0, "has_battery": False}, {"no_battery": 2.0}),
    # The kettle went off, the battery still gave 2.5 kW where the goal (the house's 0.3 kW) asked less.
    ({"export_kwh": 2.2, "dt_h": H, "battery_w": 2500.0, "soc_wh": HALF, "goal_w": 300.0}, {"flip_flop": 2.2}),
    # A forced discharge into the export (a person or the plan asked for 3 kW, the house takes 1 kW).
    ({"export_kwh": 2.0, "dt_h": H, "battery_w": 3000.0, "soc_wh": HALF, "goal_w": 3000.0}, {"planned": 2.0}),
    # No controller data at all: battery energy exported is the controller not following.
    ({"export_kwh": 0.2, "dt_h": H, "battery_w": 200.0, "soc_wh": HALF}, {"flip_flop": 0.2}),
    # Full: nowhere to put the sun.
    ({"export_kwh": 1.5, "dt_h": H, "battery_w": 0.0, "soc_wh": B.capacity_wh, "goal_w": -1500.0},
     {"battery_full": 1.5}),
    # Charging as fast as it may; with a BMS limit of 1 kW that is 1 kW.
    ({"export_kwh": 1.0, "dt_h": H, "battery_w": -3000.0, "soc_wh": HALF, "goal_w": -4000.0}, {"power_limit": 1.0}),
    ({"export_kwh": 1.0, "dt_h": H, "battery_w": -1000.0, "soc_wh": HALF, "goal_w": -2000.0, "charge_max_w": 1000.0},
     {"power_limit": 1.0}),
    # Asked to charge 2 kW, charging 0.5 kW (ramping up): the 1.5 kW not yet taken is lag.
    ({"export_kwh": 1.5, "dt_h": H, "battery_w": -500.0, "soc_wh": HALF, "goal_w": -2000.0, "planned_grid_w": -0.0},
     {"flip_flop": 1.5}),
    # The plan held the battery and expected 1 kW of export; 1.6 kW went: 0.6 kW it did not foresee.
    ({"export_kwh": 1.6, "dt_h": H, "battery_w": 0.0, "soc_wh": HALF, "goal_w": 0.0, "planned_grid_w": -1000.0},
     {"planned": 1.0, "forecast_error": 0.6}),
    # Hold mode, no plan: the mode a person chose kept the battery out of it.
    ({"export_kwh": 0.8, "dt_h": H, "battery_w": 0.0, "soc_wh": HALF, "goal_w": 0.0}, {"planned": 0.8}),
]  # fmt: skip


@pytest.mark.parametrize(("step", "expected"), STEPS)
def test_split_step_table(step: dict[str, float], expected: dict[str, float]) -> None:
    assert split(**step) == pytest.approx(expected)


@given(
    export=st.floats(0, 5),
    battery=st.floats(-4000, 4000),
    soc=st.floats(0, 100),
    goal=st.none() | st.floats(-4000, 4000),
    planned=st.none() | st.floats(-4000, 4000),
    limit=st.none() | st.floats(0, 4000),
    has=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_causes_add_up_to_the_export(
    export: float, battery: float, soc: float, goal: float | None, planned: float | None, limit: float | None,
    has: bool,
) -> None:  # fmt: skip
    causes = export_causes(ExportStep(export, 0.25, battery, B.wh(soc), goal, planned, limit, has), B)
    assert set(causes) == set(EXPORT_CAUSES) and min(causes.values()) >= 0.0
    assert sum(causes.values()) == pytest.approx(export, abs=1e-9)
    assert sum(legacy_causes(causes).values()) == pytest.approx(export, abs=1e-9)


def test_surplus_not_taken_counts_as_battery_full_when_the_battery_fills_that_day() -> None:
    lagging = ExportStep(1.0, H, -1000.0, HALF, goal_w=-2000.0)
    tally = ExportTally()
    tally.add("d1", lagging, B)
    tally.add("d1", ExportStep(0.0, H, -2000.0, B.capacity_wh), B)  # full by the afternoon
    tally.add("d2", lagging, B)  # the next day it never fills
    tally.settle()
    assert tally.causes["battery_full"] == pytest.approx(1.0) and tally.causes["flip_flop"] == pytest.approx(1.0)


def test_a_full_battery_holding_grid_energy_is_a_forecast_error() -> None:
    """3 kWh bought at night for a dull day that came out sunny, then 5 kWh exported full."""
    tally = ExportTally()
    tally.add("d", ExportStep(0.0, 3 * H, -1000.0, B.wh(60), import_w=1300.0), B)
    tally.add("d", ExportStep(0.0, H, 500.0, B.wh(55)), B)  # 0.5 kWh of it used at breakfast
    tally.add("d", ExportStep(5.0, 5 * H, 0.0, B.capacity_wh), B)
    tally.settle()
    assert tally.causes["forecast_error"] == pytest.approx(2.5)
    assert tally.causes["battery_full"] == pytest.approx(2.5)
    legacy = PolicyResult("x")
    legacy.exports = tally
    assert legacy.export_by_cause_kwh["policy"] == pytest.approx(2.5)


# -- the seed's month ---------------------------------------------------------------------------
# "60 kWh exported in a month, of which about 10 kWh by a wrong profile, 20 kWh by ramping and
# flipping and 30 kWh by a full battery" (DESIGN.md, issue 13). The house: a 10 kWh battery whose
# inverter follows its zero-grid goal two minutes late, kettles in the day, ten sunny days in
# thirty, and three nights on which a time profile charged 4.5 kWh from the grid for a dull day that
# came out sunny. Its daily statistics are computed as the recorder computes them.

SUNNY = set(range(0, 20, 2))
WRONG_NIGHTS = {2, 8, 14}
FLAT = tariff_from_config(TariffConfig(timezone="UTC"))


def seed_month(wrong_nights: set[int]) -> list:  # type: ignore[type-arg]
    rng = np.random.default_rng(1)
    soc_wh, previous, lag = B.wh(40.0), 0.0, 2
    hour = np.arange(1440) / 60.0
    days = []
    for d in range(30):
        day = date(2026, 4, 1) + timedelta(days=d)
        start, end = day_bounds(day, "UTC")
        peak = 1500.0 if d in SUNNY else 900.0
        pv = np.where((hour > 6) & (hour < 19), peak * np.sin(np.pi * (hour - 6) / 13).clip(0), 0.0)
        if d not in SUNNY:
            pv = pv * rng.uniform(0.7, 1.1, 1440)  # passing cloud
        load = 250.0 + np.where((hour >= 17) & (hour < 22), 350.0, 0.0)
        for t in rng.choice(np.arange(7 * 60, 22 * 60), 4, replace=False):
            load[t : t + 3] += 2500.0  # a kettle
        night_charge = (hour >= 2) & (hour < 5) & (d in wrong_nights)
        goal = np.where(night_charge, -1500.0, load - pv)
        battery, soc = np.zeros(1440), np.zeros(1440)
        pending = [previous] * lag
        for k in range(1440):
            pending.append(goal[k])
            want = pending.pop(0)  # the inverter follows the goal two minutes late
            room_out = max(0.0, soc_wh - B.wh(B.reserve_pct)) * 60.0
            room_in = max(0.0, B.wh(B.ceiling_pct) - soc_wh) * 60.0
            battery[k] = min(want, B.max_discharge_w, room_out) if want > 0 else -min(-want, B.max_charge_w, room_in)
            soc_wh -= battery[k] / 60.0
            soc[k] = B.pct(soc_wh)
        previous = goal[-1]
        frame = pd.DataFrame({"grid_w": load - pv - battery, "pv_w": pv, "load_w": load, "battery_w": battery,
                              "soc_pct": soc, "setpoint_w": goal, "goal_w": goal},
                             index=pd.date_range(start, end, freq="60s", inclusive="left"))  # fmt: skip
        days.append(daily_stats(day, frame, 60, B, FLAT, None, ts=end))
    return days


def test_the_seeds_month_splits_as_the_seed_told_it() -> None:
    days = seed_month(WRONG_NIGHTS)
    for day in days:
        assert sum(day.export_causes_wh.values()) == pytest.approx(day.export_wh, abs=0.01)
        assert sum(day.export_by_cause_wh.values()) == pytest.approx(day.export_wh, abs=0.01)
    month = monthly(days)["2026-04"]
    kwh = {c: month.get(f"export_causes_wh_{c}", 0.0) / 1000.0 for c in EXPORT_CAUSES}
    assert month["export_wh"] / 1000.0 == pytest.approx(60.0, abs=8.0)
    assert kwh["battery_full"] == pytest.approx(30.0, abs=6.0)
    assert kwh["flip_flop"] == pytest.approx(20.0, abs=5.0)
    assert kwh["forecast_error"] == pytest.approx(10.0, abs=4.0)
    assert kwh["planned"] + kwh["power_limit"] < 1.0
    # Independently: the same month without the wrong night charges (perfect foresight) exports
    # less; forecast_error is most of that difference and never more.
    without = monthly(seed_month(set()))["2026-04"]
    saved = (month["export_wh"] - without["export_wh"]) / 1000.0
    assert 0.5 * saved <= kwh["forecast_error"] <= saved
    assert without.get("export_causes_wh_forecast_error", 0.0) / 1000.0 < 0.2


# -- the backtest ---------------------------------------------------------------------------------

SEED_YEAR = Path(__file__).parents[2] / "deploy/scenarios/seed-house-year.csv"


def _setup(battery: BatteryModel) -> Setup:
    tariff = TariffConfig.model_validate(
        {
            "import": {
                "kind": "two_rate",
                "off_peak": {"start": "00:30", "end": "07:30", "price_per_kwh": 0.09},
                "peak_price_per_kwh": 0.30,
            },
            "export": {"kind": "flat", "price_per_kwh": 0.05},
        }
    )
    return Setup(battery, DispatcherConfig(pv_azimuth_deg=141, horizon_hours=24), tariff_from_config(tariff),
                 "Europe/London", PvArray(4.0, 30.0, 141.0, 53.6, -0.5))  # fmt: skip


def _days(first: int, count: int) -> Series:
    full = read_series(SEED_YEAR)
    rows = slice(first * 48, (first + count) * 48)
    return Series(full.times[rows], full.load_w[rows], full.pv_w[rows], full.step_s)


SEED_BATTERY = BatteryModel(capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000, floor_pct=10.0,
                            reserve_pct=20.0, ceiling_pct=97.0)  # fmt: skip


def test_backtest_forecast_error_is_what_perfect_foresight_would_have_stored() -> None:
    """A late-March week of the seed's year: perfect foresight has no forecast error by definition,
    and the planner's is about the extra export it made over the perfect run."""
    series, setup = _days(80, 7), _setup(SEED_BATTERY)
    planner, perfect = simulate(series, "planner", setup), simulate(series, "perfect", setup)
    for result in (planner, perfect):
        assert sum(result.export_causes_kwh.values()) == pytest.approx(result.export_kwh, abs=1e-6)
        assert sum(result.export_by_cause_kwh.values()) == pytest.approx(result.export_kwh, abs=1e-6)
    assert perfect.export_causes_kwh["forecast_error"] < 0.05
    extra = planner.export_kwh - perfect.export_kwh
    assert extra > 1.0
    assert 0.4 * extra <= planner.export_causes_kwh["forecast_error"] <= 1.3 * extra


def test_backtest_nights_are_judged_at_the_reserve() -> None:
    """January of the seed's year, reserve 20 %: a plain greedy self-use stopping at the reserve
    (written here, independently) reaches first light above it on as many nights as the backtest's
    self_use counts, not 28 of 31 as when nights were judged at the floor."""
    series = _days(0, 31)
    result = simulate(series, "self_use", _setup(SEED_BATTERY))
    b, soc, made, seen = SEED_BATTERY, SEED_BATTERY.wh(50.0), 0, set()
    local = series.times.tz_convert("Europe/London").strftime("%Y-%m-%d")
    for k in range(len(series.times)):
        if local[k] not in seen and series.pv_w[k] >= 50.0:
            seen.add(local[k])
            made += int(k > 0 and b.pct(soc) > b.reserve_pct + 1.0)
        net = series.load_w[k] - series.pv_w[k]
        if net > 0:
            soc -= min(net / b.discharge_efficiency * 0.5, max(0.0, soc - b.wh(b.reserve_pct)), 1500.0)
        else:
            soc += min(-net * b.charge_efficiency * 0.5, max(0.0, b.wh(b.ceiling_pct) - soc), 1500.0)
    january = result.nights_to_sunrise["2025-01"]
    assert january["nights"] == 31
    assert abs(january["made_it"] - made) <= 1 and january["made_it"] <= 4
    assert len(result.soc_at_first_light_pct) == 31
