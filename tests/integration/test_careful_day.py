"""The demo day, judged as a careful owner would: the seed house on 21 June under the dispatcher's
own planner and controller (``services.devtools.sim_day``: the simulator's physics in one process,
the devices read at the fleet's cadences), scored by ``services.recorder.control_figures``.

Targets (per day), stated here and met. With ``dispatcher.inverter_self_use`` (the default) the
dispatcher hands the inverter its own self-use wherever the goal is only to zero the grid, so the
zero-grid tracking is the inverter's (every second, on its own CT); with it off every watt is a
setpoint of this controller. "Before" is the controller without ``battery_seen`` and
``hold_range`` (setpoints only: the hand-back came later). Measured on this machine:

| dispatcher | cadence (meter / inverter) | figure | target | before | after |
|---|---|---|---|---|---|
| own self-use handed back | 120 s / 300 s (the demo at 60x) | unplanned battery export | <= 150 Wh | | 75 Wh |
| | | peak-rate import above the reserve | <= 300 Wh | | 128 Wh |
| | | setpoint and battery opposite | <= 60 s | | 1 s |
| | 2 s / 5 s (a real house) | the same three | same | | 75 Wh, 128 Wh, 1 s |
| setpoints only | 120 s / 300 s | unplanned battery export | <= 300 Wh | 598 Wh | 166 Wh |
| | | peak-rate import above the reserve | <= 900 Wh | 1134 Wh | 526 Wh |
| | | setpoint and battery opposite | <= 60 s | 14 s | 12 s |
| | 2 s / 5 s | unplanned battery export | <= 60 Wh | 98 Wh | 46 Wh |
| | | peak-rate import above the reserve | <= 400 Wh | 300 Wh | 308 Wh |
| | | setpoint and battery opposite | <= 30 s | 7 s | 7 s |

With setpoints only, at a real house's cadence the deadband holds a setpoint that works against
the house (a discharge above its draw, a charge above the surplus) only within half a write step
(25 W), so battery energy sent to the grid halved while peak-rate import stayed where it was; most
of what is left is the lag of one meter period after a load steps (without any deadband: 44 Wh
and 291 Wh). What the handed-back inverter still exports is its own CT's error and ramp.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from services.devtools.demo import SCENARIO as SEED
from services.devtools.sim_day import simulate_day
from services.recorder.control_figures import ControlFigures, control_figures
from shared.config import OngridConfig, load_config
from shared.energy.battery import BatteryModel
from shared.energy.tariff import tariff_from_config

DAY = datetime(2026, 6, 21, tzinfo=UTC)


def figures(cfg: OngridConfig, meter_s: int, inverter_s: int) -> tuple[ControlFigures, int]:
    trace = simulate_day(cfg, DAY, meter_s=meter_s, inverter_s=inverter_s)
    frame = trace.frame()
    battery = BatteryModel.from_config(cfg.batteries[0], cfg.inverters[0])
    import_price, _ = tariff_from_config(cfg.tariff).prices(frame.index, 1)
    planned_b = frame["planned_battery_w"].fillna(0.0).to_numpy()
    planned_g = frame["planned_grid_w"].fillna(0.0).to_numpy()
    planned_export = np.minimum(np.clip(planned_b, 0.0, None), np.clip(-planned_g, 0.0, None))
    return control_figures(frame, 1, battery, import_price, planned_export), trace.commands


def scenario(inverter_self_use: bool, meter_s: int, inverter_s: int) -> OngridConfig:
    cfg = load_config(SEED)
    update: dict[str, object] = {"inverter_self_use": inverter_self_use}
    if inverter_s > 60:
        # As the demo relocates the scenario at 60x: lease and staleness long enough for its polls.
        update.update(stale_after_s=1800.0, lease_s=1800.0)
    return cfg.model_copy(update={"dispatcher": cfg.dispatcher.model_copy(update=update)})


# (inverter_self_use, meter_s, inverter_s, most unplanned export Wh, most peak import Wh, most opposite s)
TARGETS = [
    (True, 120, 300, 150.0, 300.0, 60.0),
    (True, 2, 5, 150.0, 300.0, 60.0),
    (False, 120, 300, 300.0, 900.0, 60.0),
    (False, 2, 5, 60.0, 400.0, 30.0),
]


@pytest.mark.parametrize(("own", "meter_s", "inverter_s", "export_wh", "import_wh", "opposite_s"), TARGETS)
def test_the_demo_day_is_run_carefully(
    own: bool, meter_s: int, inverter_s: int, export_wh: float, import_wh: float, opposite_s: float
) -> None:
    result, commands = figures(scenario(own, meter_s, inverter_s), meter_s, inverter_s)
    print(f"self-use handed back {own}, cadence {meter_s}/{inverter_s} s: {result.as_dict()}, {commands} commands")
    assert result.unplanned_battery_export_wh <= export_wh, result
    assert result.peak_import_wh <= import_wh, result
    assert result.opposite_sign_s <= opposite_s, result


def test_an_hour_runs_a_control_cycle_per_meter_reading_within_the_limits() -> None:
    trace = simulate_day(scenario(False, 2, 5), DAY, hours=1.0, meter_s=2, inverter_s=5)
    assert len(trace.times) == 3600
    assert all(-3000.0 - 1e-6 <= b <= 3000.0 + 1e-6 for b in trace.battery_w)
    assert trace.commands > 0 and sum(trace.reasons.values()) == 3600 // 2
