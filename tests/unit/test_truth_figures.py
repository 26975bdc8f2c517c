"""The demo's ground-truth figures (issue 12 item 8's four symptoms) on hand-made minutes, each
worked out by hand in the comments."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from services.recorder.truth_figures import SetpointPoint, TruthSample, deadband_held, truth_figures

START = datetime(2026, 6, 21, 18, 0, tzinfo=UTC)
T0 = int(START.timestamp() * 1e9)
MIN = 60_000_000_000
PEAK, NIGHT = 0.30, 0.09
ZONE = ZoneInfo("Europe/London")

# One truth sample a minute: (grid W, battery W, load W, PV W, import price)
SAMPLES = [
    (-55, 200, 145, 0, NIGHT),  # 0 symptom 1: 200 W held against a 145 W load, 55 W exported at night
    (-55, 200, 145, 0, NIGHT),  # 1 the same
    (-30, 200, 170, 0, NIGHT),  # 2 30 W exported: under the 40 W line
    (110, -300, 400, 590, PEAK),  # 3 symptom 2: charging 300 W while importing 110 W at the peak rate
    (110, -300, 400, 590, NIGHT),  # 4 the same at the night rate: not counted
    (2900, -2700, 200, 0, PEAK),  # 5 symptom 3: setpoint +3,000 W (below), the battery charging
    (-2800, 3000, 200, 0, PEAK),  # 6 symptom 4: a 3 kW load ended, the battery still at 3 kW
    (-1500, 3000, 1500, 0, PEAK),  # 7 1.5 kW export: under the 2 kW line; 1500 W of battery export
]
END = T0 + len(SAMPLES) * MIN


def samples() -> tuple[list[TruthSample], np.ndarray]:
    out = [TruthSample(T0 + k * MIN, g, b, load, pv) for k, (g, b, load, pv, _) in enumerate(SAMPLES)]
    return out, np.array([row[4] for row in SAMPLES])


# The setpoint: 200 W from before the start, +3,000 W from 4.5 minutes (in force for sample 5, not
# yet 10 s old at no sample), and the handed-back estimate -50 W from 6.5 minutes.
SETPOINTS = [
    SetpointPoint(T0 - MIN, 200.0, True),
    SetpointPoint(T0 + 4 * MIN + MIN // 2, 3000.0, True),
    SetpointPoint(T0 + 6 * MIN + MIN // 2, -50.0, False),
]


def test_each_symptom_by_hand() -> None:
    truth, price = samples()
    figures = truth_figures(truth, END, price, SETPOINTS, ZONE)
    export = figures["export_while_discharging"]
    # Samples 0, 1, 6, 7: 4 minutes; the battery's share 55 + 55 + 2800 + 1500 W for a minute each.
    assert export["minutes"] == 4
    assert export["battery_export_wh"] == pytest.approx((55 + 55 + 2800 + 1500) / 60, abs=0.05)
    assert export["minutes_without_pv"] == 4
    assert export["worst"]["battery_w"] == 3000 and export["worst"]["grid_w"] == -2800
    charge = figures["charge_while_peak_import"]
    assert charge["minutes"] == 2  # samples 3 and 5 (4 is at the night rate)
    assert charge["import_wh"] == pytest.approx((110 + 2900) / 60, abs=0.05)
    against = figures["against_setpoint"]
    # Sample 3 and 4 charge 300 W against a 200 W setpoint; sample 5 charges against +3,000 W.
    assert against["minutes"] == 3 and against["minutes_commanding"] == 3
    assert against["worst"]["battery_w"] == -2700
    full = figures["full_power_into_export"]
    assert full["minutes"] == 1 and full["worst"]["at"] == "2026-06-21T19:06:00+01:00"


def test_charging_against_a_peak_import_counts_whatever_the_setpoint() -> None:
    truth, _ = samples()
    price = np.full(len(truth), PEAK)
    price[0] = NIGHT  # the day's cheapest, so the rest is peak
    figures = truth_figures(truth, END, price, SETPOINTS, ZONE)
    assert figures["charge_while_peak_import"]["minutes"] == 3  # samples 3, 4, 5
    assert figures["charge_while_peak_import"]["import_wh"] == pytest.approx((110 + 110 + 2900) / 60, abs=0.05)


def test_a_sample_counts_at_most_two_minutes_and_a_flat_price_has_no_peak() -> None:
    truth, _ = samples()
    truth = truth[:1]  # one sample, then silence to the end: two minutes at most
    figures = truth_figures(truth, END, np.array([PEAK]), [], ZONE)
    assert figures["export_while_discharging"]["minutes"] == 2
    assert figures["charge_while_peak_import"]["minutes"] == 0
    assert figures["against_setpoint"]["minutes"] == 0  # no setpoint recorded: nothing to be against


def test_deadband_held_counts_only_holds_that_work_against_the_house() -> None:
    decisions = [
        ("deadband", 200.0, 150.0),  # 50 W above the draw: beyond the 25 W slack
        ("deadband", 170.0, 150.0),  # within the slack
        ("deadband", -300.0, -190.0),  # a charge 110 W above the surplus
        ("deadband", 100.0, 150.0),  # less than the need: the energy stays in the battery
        ("plan_self_use", 400.0, 150.0),  # not the deadband's doing
    ]
    assert deadband_held(decisions, 25.0) == {"discharge_above_need": 1, "charge_above_surplus": 1}
