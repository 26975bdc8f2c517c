"""Daily statistics on hand-made days whose answers are known, and invariants on random days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.recorder.stats import (
    Site,
    daily_stats,
    day_bounds,
    day_frame,
    discharge_stop_pct,
    monthly,
    payback,
    sunrise,
)
from shared.config.tariff import Flat, TariffConfig, TwoRate, Window
from shared.energy.battery import BatteryModel
from shared.energy.tariff import tariff_from_config

DAY = date(2026, 3, 10)
START, END = day_bounds(DAY, "UTC")
BATTERY = BatteryModel(capacity_wh=10_000.0, max_charge_w=3000.0, max_discharge_w=3000.0, floor_pct=10.0)
FLAT = tariff_from_config(
    TariffConfig(
        timezone="UTC", import_=Flat(kind="flat", price_per_kwh=0.30), export=Flat(kind="flat", price_per_kwh=0.10)
    )
)


def frame(**columns: np.ndarray | float) -> pd.DataFrame:
    index = pd.date_range(START, END, freq="60s", inclusive="left")
    data = {c: np.broadcast_to(np.asarray(columns.get(c, np.nan), dtype=float), len(index)) for c in
            ("grid_w", "pv_w", "load_w", "battery_w", "soc_pct", "setpoint_w")}  # fmt: skip
    return pd.DataFrame(data, index=index)


def stats(f: pd.DataFrame, tariff=FLAT, sunrise_at=None):  # type: ignore[no-untyped-def]
    return daily_stats(DAY, f, 60, BATTERY, tariff, sunrise_at, ts=END)


def test_constant_import_day() -> None:
    s = stats(frame(grid_w=500.0, pv_w=0.0, load_w=500.0, battery_w=0.0, soc_pct=50.0))
    assert s.import_wh == pytest.approx(12_000.0)
    assert s.load_wh == pytest.approx(12_000.0) and s.export_wh == 0.0
    assert s.self_sufficiency_pct == 0.0
    assert s.cost == pytest.approx(12.0 * 0.30) and s.savings == pytest.approx(0.0)
    assert s.balance_residual_wh == pytest.approx(0.0)
    assert s.samples == 1440


def test_battery_covering_the_load_saves_its_energy_at_the_import_price() -> None:
    s = stats(frame(grid_w=0.0, pv_w=0.0, load_w=400.0, battery_w=400.0, soc_pct=60.0))
    assert s.battery_discharge_wh == pytest.approx(9600.0)
    assert s.equivalent_cycles == pytest.approx(0.96)
    assert s.cost == 0.0 and s.cost_without_battery == pytest.approx(9.6 * 0.30)
    assert s.self_sufficiency_pct == 100.0


def test_ct_error_shows_in_the_residual() -> None:
    # The grid CT reads 20 W high all day: load - pv - grid - battery = -20 W for 24 h.
    s = stats(frame(grid_w=520.0, pv_w=0.0, load_w=500.0, battery_w=0.0, soc_pct=50.0))
    assert s.balance_residual_wh == pytest.approx(-480.0)


def test_round_trip_efficiency_accounts_for_the_stored_change() -> None:
    half = np.r_[np.full(720, -1000.0), np.full(720, 900.0)]  # 12 kWh in, 10.8 kWh out
    soc = np.r_[np.linspace(20, 70, 720), np.linspace(70, 20, 720)]  # back where it started
    s = stats(frame(grid_w=0.0, pv_w=0.0, load_w=0.0, battery_w=half, soc_pct=soc))
    assert s.round_trip_efficiency_pct == pytest.approx(90.0)


def test_export_by_cause_battery_full_and_discharge_into_export() -> None:
    grid = np.r_[np.full(720, -1000.0), np.full(720, -200.0)]
    battery = np.r_[np.zeros(720), np.full(720, 200.0)]
    soc = np.r_[np.full(720, 100.0), np.full(720, 50.0)]
    s = stats(frame(grid_w=grid, pv_w=1000.0, load_w=0.0, battery_w=battery, soc_pct=soc, setpoint_w=0.0))
    assert s.export_by_cause_wh["battery_full"] == pytest.approx(12_000.0)
    # Discharging into the export when the dispatcher did not ask for it: flip/ramp.
    assert s.export_by_cause_wh["mode_flip"] == pytest.approx(2400.0)
    assert s.export_wh == pytest.approx(sum(s.export_by_cause_wh.values()))


def test_sunrise_with_charge_left_or_not() -> None:
    at = START + timedelta(hours=6, minutes=30)
    soc = np.r_[np.full(390, 35.0), np.full(1050, 40.0)]
    s = stats(frame(grid_w=0.0, pv_w=0.0, load_w=0.0, battery_w=0.0, soc_pct=soc), sunrise_at=at)
    assert s.reached_sunrise is True and s.soc_at_sunrise_pct == 40.0
    s = stats(frame(grid_w=0.0, pv_w=0.0, load_w=0.0, battery_w=0.0, soc_pct=10.5), sunrise_at=at)
    assert s.reached_sunrise is False


def test_sunrise_at_the_seed_site() -> None:
    site = Site(53.6, -0.5, "Europe/London")
    rise = sunrise(date(2026, 6, 21), site)
    assert rise is not None and (rise.hour, rise.minute // 10) in ((3, 3), (3, 4))  # ~04:37 BST


def test_two_rate_tariff_prices_the_window() -> None:
    e7 = tariff_from_config(
        TariffConfig(
            timezone="UTC",
            import_=TwoRate(kind="two_rate", off_peak=Window(start="00:00", end="07:00", price_per_kwh=0.10),
                            peak_price_per_kwh=0.40),
            export=Flat(kind="flat", price_per_kwh=0.0),
        )
    )  # fmt: skip
    s = stats(frame(grid_w=1000.0, pv_w=0.0, load_w=1000.0, battery_w=0.0, soc_pct=50.0), tariff=e7)
    assert s.cost == pytest.approx(7 * 0.10 + 17 * 0.40)


def test_day_frame_holds_a_reading_for_the_gap_limit_only() -> None:
    t0 = int(START.timestamp() * 1e9)
    f = day_frame({"grid_w": [(t0, 100.0)]}, START, END, step_s=60, max_gap_s=300)
    assert f["grid_w"].notna().sum() == 6  # the reading's bucket and five more


def test_missing_data_is_not_counted() -> None:
    grid = np.r_[np.full(720, 500.0), np.full(720, np.nan)]
    s = stats(frame(grid_w=grid, pv_w=0.0, load_w=500.0, battery_w=0.0, soc_pct=50.0))
    assert s.import_wh == pytest.approx(6000.0) and s.samples == 720


@given(
    load=st.lists(st.floats(0, 8000), min_size=24, max_size=24),
    pv=st.lists(st.floats(0, 4000), min_size=24, max_size=24),
    battery=st.lists(st.floats(-3000, 3000), min_size=24, max_size=24),
)
@settings(max_examples=60, deadline=None)
def test_balanced_days_have_no_residual_and_sane_figures(
    load: list[float], pv: list[float], battery: list[float]
) -> None:
    hourly = lambda v: np.repeat(np.asarray(v), 60)  # noqa: E731
    grid = hourly(load) - hourly(pv) - hourly(battery)
    s = stats(frame(grid_w=grid, pv_w=hourly(pv), load_w=hourly(load), battery_w=hourly(battery), soc_pct=50.0))
    assert s.balance_residual_wh == pytest.approx(0.0, abs=1e-6)
    assert s.import_wh - s.export_wh == pytest.approx(float(grid.sum()) / 60.0, abs=0.01)
    assert s.self_sufficiency_pct is None or 0.0 <= s.self_sufficiency_pct <= 100.0
    assert s.export_wh == pytest.approx(sum(s.export_by_cause_wh.values()), abs=0.01)
    # Savings are what the battery moved, priced: never more than its discharge at the import price.
    assert (
        s.savings is not None
        and s.savings <= s.battery_discharge_wh / 1000.0 * 0.30 + s.battery_charge_wh / 1000.0 * 0.10 + 1e-6
    )


def test_monthly_sums_and_payback_band_needs_two_months() -> None:
    base = stats(frame(grid_w=0.0, pv_w=0.0, load_w=400.0, battery_w=400.0, soc_pct=60.0))
    days = [base.model_copy(update={"day": date(2026, 3, d)}) for d in range(1, 11)]
    months = monthly(days)
    assert months["2026-03"]["days"] == 10
    assert months["2026-03"]["savings"] == pytest.approx(10 * base.savings)  # type: ignore[operator]
    one = payback(days, battery_cost=3000.0)
    assert one["payback_band_years"] is None and "two months" in one["note"]
    assert one["payback_years"] == pytest.approx(3000.0 / (base.savings * 365), abs=0.01)  # type: ignore[operator]
    later = [d.model_copy(update={"day": date(2026, 4, d.day.day), "savings": 2.0,
                                  "cost_without_battery": (d.cost or 0) + 2.0}) for d in days]  # fmt: skip
    two = payback(days + later, battery_cost=3000.0)
    low, high = two["payback_band_years"]
    assert low < two["payback_years"] < high


def test_day_bounds_on_a_dst_day() -> None:
    start, end = day_bounds(date(2026, 3, 29), "Europe/London")
    assert end - start == timedelta(hours=23)
    assert start == datetime(2026, 3, 29, 0, 0, tzinfo=UTC)


E7 = tariff_from_config(
    TariffConfig(
        timezone="UTC",
        import_=TwoRate(kind="two_rate", off_peak=Window(start="00:30", end="07:30", price_per_kwh=0.09),
                        peak_price_per_kwh=0.30),
        export=Flat(kind="flat", price_per_kwh=0.05),
    )
)  # fmt: skip


def test_min_and_max_soc_and_the_peak_windows_discharge() -> None:
    # Charged off-peak 01:00-05:00 at 2 kW, 2.4 kWh delivered 17:00-20:00 and 0.6 kWh 06:00-07:00 (off-peak).
    battery = np.zeros(1440)
    battery[60:300] = -2000.0
    battery[360:420] = 600.0
    battery[1020:1200] = 800.0
    soc = np.r_[np.linspace(22.0, 96.5, 720), np.linspace(96.5, 31.0, 720)]
    s = stats(frame(grid_w=0.0, pv_w=0.0, load_w=np.clip(battery, 0, None), battery_w=battery, soc_pct=soc), tariff=E7)
    assert s.soc_min_pct == 22.0 and s.soc_max_pct == 96.5
    assert s.peak_discharge_wh == pytest.approx(2400.0)
    assert s.battery_discharge_wh == pytest.approx(3000.0)  # the 06:00 hour is off-peak, not counted
    # One price all day: there is no peak window to speak of.
    assert stats(frame(grid_w=0.0, pv_w=0.0, load_w=0.0, battery_w=battery, soc_pct=soc)).peak_discharge_wh is None
    month = monthly([s, s.model_copy(update={"day": DAY + timedelta(days=1), "soc_min_pct": 18.0})])["2026-03"]
    assert month["soc_min_pct"] == 18.0 and month["soc_max_pct"] == 96.5
    assert month["peak_discharge_wh"] == pytest.approx(4800.0)


def test_a_night_is_made_above_where_the_dispatcher_stops_not_above_the_floor() -> None:
    battery = BatteryModel(capacity_wh=10_000.0, max_charge_w=3000.0, max_discharge_w=3000.0,
                           floor_pct=10.0, reserve_pct=20.0)  # fmt: skip
    at = START + timedelta(hours=6)
    stopped = frame(grid_w=0.0, pv_w=0.0, load_w=0.0, battery_w=0.0, soc_pct=20.2)  # parked at the reserve
    s = daily_stats(DAY, stopped, 60, battery, FLAT, at, ts=END)
    assert s.reached_sunrise is False and s.discharge_stop_pct == 20.0 and s.soc_at_sunrise_pct == 20.2
    # In mode off the inverter itself runs the battery down to the floor: 20.2 % is a night made.
    s = daily_stats(DAY, stopped, 60, battery, FLAT, at, ts=END, mode_off_at_sunrise=True)
    assert s.reached_sunrise is True and s.discharge_stop_pct == 10.0
    assert discharge_stop_pct(battery) == 20.0


def test_nights_to_sunrise_per_month_when_some_nights_fail() -> None:
    """A January and February at the seed site, reserve 20 %: the battery reaches first light with
    24 % on the nights listed, and is parked at the reserve (20.3 %) on the others."""
    battery = BatteryModel(capacity_wh=10_400.0, max_charge_w=3000.0, max_discharge_w=3000.0,
                           floor_pct=10.0, reserve_pct=20.0)  # fmt: skip
    site = Site(53.6, -0.5, "Europe/London")
    made = {date(2026, 1, d) for d in (3, 4, 17, 30)} | {date(2026, 2, d) for d in range(1, 15)}
    days = []
    for offset in range(59):
        day = date(2026, 1, 1) + timedelta(days=offset)
        start, end = day_bounds(day, site.timezone)
        rise = sunrise(day, site)
        assert rise is not None
        index = pd.date_range(start, end, freq="60s", inclusive="left")
        # Down from 60 % overnight to the reserve, or stopping short of it; charged again after sunrise.
        low = 24.0 if day in made else 20.3
        hours = np.asarray((index - index[0]).total_seconds() / 3600.0)
        h_rise = (rise - start).total_seconds() / 3600.0
        soc = np.where(hours < h_rise, 60.0 - (60.0 - low) * hours / h_rise, low + (hours - h_rise) / 2)
        f = pd.DataFrame({c: 0.0 for c in ("grid_w", "pv_w", "load_w", "battery_w", "setpoint_w")}, index=index)
        f["soc_pct"] = soc
        days.append(daily_stats(day, f, 60, battery, FLAT, rise, ts=end))
    months = monthly(days)
    assert (months["2026-01"]["nights"], months["2026-01"]["nights_to_sunrise"]) == (31, 4)
    assert (months["2026-02"]["nights"], months["2026-02"]["nights_to_sunrise"]) == (28, 14)
    # The first reading after sunrise: within a minute of it, so within 0.01 points of the low.
    assert [d.soc_at_sunrise_pct for d in days[:5]] == pytest.approx([20.3, 20.3, 24.0, 24.0, 20.3], abs=0.02)


def test_an_accelerated_demos_readings_hold_for_the_bridges_wall_time(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """At 240x a bridge polling every 5 wall seconds stamps a reading every 20 simulated minutes:
    that is a bridge at work, not 15 minutes of missing data in every 20."""
    from services.recorder.backends import SqliteStore
    from services.recorder.points import to_rows
    from services.recorder.stats_job import compute_day
    from shared.config import OngridConfig
    from shared.examples import EXAMPLES
    from shared.messages import InverterState
    from shared.topics import Kind, Stream, TopicParts

    store = SqliteStore(tmp_path / "s.sqlite")
    parts = TopicParts("s", Kind.INVERTER, "inv1", Stream.STATE)
    rows = []
    for k in range(0, 24 * 60, 20):
        reading = EXAMPLES[InverterState].model_copy(
            update={"ts": START + timedelta(minutes=k), "pv_power_w": 1000.0, "load_power_w": 1000.0,
                    "grid_power_w": 0.0, "battery_power_w": 0.0}
        )
        rows += to_rows(parts, reading)
    store.write(rows)
    cfg = OngridConfig.model_validate({"site": "s", "tariff": {"timezone": "UTC"}})
    wall = compute_day(cfg, store, FLAT, DAY, END)
    demo = compute_day(cfg, store, FLAT, DAY, END, speed=240.0)
    assert wall is not None and demo is not None
    assert wall.pv_wh == pytest.approx(24 * 6 / 20 * 1000.0, rel=0.02)  # 5 minutes held of every 20
    assert demo.pv_wh == pytest.approx(24_000.0, rel=0.01)
    store.close()
