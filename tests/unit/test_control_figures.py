"""The three careful-owner figures on hand-made minutes, each worked out by hand in the comments."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.recorder.backends import SqliteStore
from services.recorder.control_figures import (
    control_figures,
    day_control_figures,
    planned_battery_export_w,
    setpoint_at_readings,
)
from services.recorder.points import to_rows
from services.recorder.rows import Row, ns
from shared import messages as m
from shared import topics
from shared.config import OngridConfig
from shared.energy.battery import BatteryModel
from shared.energy.tariff import tariff_from_config

B = BatteryModel(capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000, floor_pct=10, reserve_pct=20)
START = datetime(2026, 6, 21, 18, 0, tzinfo=UTC)
PEAK, NIGHT = 0.30, 0.09

# One row a minute: (grid W, battery W, SoC %, setpoint W, import price, planned battery export W)
ROWS = [
    (-50, 200, 60, 200, NIGHT, 0),  # deadband held 200 W against a 150 W load: 50 W of battery exported
    (-2800, 3000, 60, 3000, PEAK, 0),  # a 3 kW load ended, the battery still at 3 kW: 2800 W exported
    (-2800, 3000, 60, 3000, PEAK, 2000),  # ... but the plan asked for 2000 W of export here: 800 W unplanned
    (-400, 1000, 60, 1000, PEAK, 0),  # PV export too, battery 1000 W, grid -400: 400 W is the battery's
    (-300, -500, 60, -500, PEAK, 0),  # charging while PV exports: no battery export
    (110, -300, 60, -300, PEAK, 0),  # charging 300 W while importing 110 W at peak: 110 W avoidable
    (2900, -2700, 60, 3000, PEAK, 0),  # setpoint discharging, battery charging: opposite; 2900 avoidable
    (4000, 3000, 60, 3000, PEAK, 0),  # a 7 kW load, battery at its 3 kW limit: nothing avoidable
    (500, 2800, 60, 2800, PEAK, 0),  # 200 W left in hand: 200 W avoidable of the 500 W
    (300, 0, 20, 0, PEAK, 0),  # at the reserve: not avoidable
    (300, 0, 60, 0, NIGHT, 0),  # the night rate: not peak
    (-100, 40, 60, -200, PEAK, 0),  # 40 W is within the sign band: not opposite; 40 W exported
]


def frame() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    index = pd.date_range(START, periods=len(ROWS), freq="60s")
    data = np.array(ROWS, dtype=float)
    columns = {"grid_w": data[:, 0], "battery_w": data[:, 1], "soc_pct": data[:, 2], "setpoint_w": data[:, 3]}
    return pd.DataFrame(columns, index=index), data[:, 4], data[:, 5]


def test_each_figure_by_hand() -> None:
    f, price, planned = frame()
    figures = control_figures(f, 60, B, price, planned)
    minute_h = 1 / 60
    assert figures.unplanned_battery_export_wh == pytest.approx((50 + 2800 + 800 + 400 + 40) * minute_h)
    assert figures.peak_import_wh == pytest.approx((110 + 2900 + 200) * minute_h)
    assert figures.opposite_sign_s == 60


def test_without_a_plan_every_battery_export_is_unplanned_and_missing_readings_count_nothing() -> None:
    f, price, _ = frame()
    figures = control_figures(f, 60, B, price)
    assert figures.unplanned_battery_export_wh == pytest.approx((50 + 2800 + 2800 + 400 + 40) / 60)
    f.iloc[1:3] = np.nan
    assert control_figures(f, 60, B, price).unplanned_battery_export_wh == pytest.approx((50 + 400 + 40) / 60)


def test_a_flat_tariff_has_no_peak() -> None:
    f, _, planned = frame()
    assert control_figures(f, 60, B, np.full(len(f), 0.24), planned).peak_import_wh == 0


def test_planned_export_follows_the_plan_step_in_force() -> None:
    index = pd.date_range(START, periods=4, freq="900s")  # 18:00, 18:15, 18:30, 18:45
    ns = int(START.timestamp()) * 1_000_000_000
    steps = [(ns, 2500.0, -1800.0), (ns + 1800 * 1_000_000_000, 500.0, 100.0)]  # 30 min steps
    # 18:00-18:30 the plan discharges 2500 W and exports 1800 W: 1800 W of it the battery's;
    # 18:30-19:00 it discharges while importing: no export asked for.
    assert planned_battery_export_w(index, steps, 1800).tolist() == [1800, 1800, 0, 0]
    assert planned_battery_export_w(index, [], 1800).tolist() == [0, 0, 0, 0]
    # a bucket past the last step's end is not covered
    assert planned_battery_export_w(index, steps[:1], 1800).tolist() == [1800, 1800, 0, 0]


def test_each_reading_is_held_against_a_setpoint_that_had_time_to_act() -> None:
    s = 1_000_000_000
    setpoints = [(0, 3000.0), (100 * s, -2000.0), (400 * s, 500.0)]
    # the inverter polled every 300 s: 0 s, 105 s (5 s after the reversal: too soon to judge), 300 s
    readings = [(0, 150.0), (105 * s, 2900.0), (300 * s, -1990.0), (600 * s, 480.0)]
    assert setpoint_at_readings(setpoints, readings) == [(300 * s, -2000.0), (600 * s, 500.0)]
    assert setpoint_at_readings([], readings) == [] and setpoint_at_readings(setpoints, []) == []
    # a decision repeating the same setpoint is not a change: the reading after it still counts
    repeated = [*setpoints, (298 * s, -2000.0)]
    assert setpoint_at_readings(repeated, readings) == [(300 * s, -2000.0), (600 * s, 500.0)]


def _store_day(tmp_path: Path, handed_back: bool) -> float:
    """The demo of 2026-06-21 at sunrise (recorded 05:37-05:48 UTC, 60x): a plan-capped 100 W
    discharge, then the inverter's own self-use while PV rises; the inverter, polled every 5
    simulated minutes, reads -60 W at 05:42:40 and -260 W at 05:47:41. The dispatcher's decisions
    meanwhile say what the battery should do from the last inverter reading (+100 W) and the grid."""
    cfg = OngridConfig.model_validate(
        {"site": "s", "tariff": {"timezone": "UTC"}, "recorder": {"sqlite_path": str(tmp_path / "s.sqlite")}}
    )
    store = SqliteStore(tmp_path / "s.sqlite")
    at = datetime(2026, 6, 21, 5, 37, 25, tzinfo=UTC)
    rows = []
    for seconds, setpoint_w, commanding in ((0, 100.0, True), (119, -129.0, not handed_back),
                                            (238, 102.0, not handed_back), (359, -58.0, not handed_back)):  # fmt: skip
        mode = m.CommandMode.DISCHARGE if setpoint_w > 0 else m.CommandMode.CHARGE
        decision = m.DispatcherDecision(
            ts=at + timedelta(seconds=seconds),
            mode="auto",
            reason="plan_self_use",
            setpoints=m.Setpoints(
                inverter_mode=mode if commanding else None,
                battery_power_w=setpoint_w,
            ),
            commanding=commanding,
        )
        rows += to_rows(topics.parse(topics.dispatcher_decision("s")), decision)
    for seconds, battery_w in ((16, 100.0), (315, -60.0), (616, -260.0)):
        rows.append(Row.make("inverter", {"site": "s", "device": "inv1"}, {"battery_power_w": battery_w},
                             ns(at + timedelta(seconds=seconds))))  # fmt: skip
    store.write(rows)
    figures = day_control_figures(cfg, store, tariff_from_config(cfg.tariff), date(2026, 6, 21))
    assert figures is not None
    return figures.opposite_sign_s


def test_a_handed_back_self_use_has_no_setpoint_to_be_against(tmp_path: Path) -> None:
    # Handed back: the +102 W is what the inverter was expected to do, not a command; its own
    # self-use charging at -60 W (the grid at zero) is not against anything. The old figure read
    # 300 s here, one inverter period, from a single sample.
    assert _store_day(tmp_path / "a", handed_back=True) == 0
    # Had +102 W been a command, the -60 W reading (78 s after it) is against it until the next reading.
    (tmp_path / "b").mkdir()
    assert _store_day(tmp_path / "b", handed_back=False) == 300
