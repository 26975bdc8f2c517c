"""The demo day, judged as a careful owner would: the seed house on 21 June under the dispatcher's
own planner and controller (``services.devtools.sim_day``: the simulator's physics in one process,
the devices read at the fleet's cadences), scored by ``services.recorder.control_figures``.

Targets (per day), stated here and met; measured on this machine with the controller before this
change (a stale inverter reading added to a fresh grid reading, a deadband that held a discharge
above the house's load) and after it:

| cadence (meter / inverter) | figure | target | before | after |
|---|---|---|---|---|
| 120 s / 300 s (the demo at 60x) | unplanned battery export | <= 300 Wh | 598 Wh | 166 Wh |
| | peak-rate import above the reserve | <= 900 Wh | 1134 Wh | 526 Wh |
| | setpoint and battery opposite | <= 60 s | 14 s | 12 s |
| 2 s / 5 s (a real house) | unplanned battery export | <= 60 Wh | 98 Wh | 46 Wh |
| | peak-rate import above the reserve | <= 400 Wh | 300 Wh | 308 Wh |
| | setpoint and battery opposite | <= 30 s | 7 s | 7 s |

At a real house's cadence the deadband now holds a setpoint that works against the house (a
discharge above its draw, a charge above the surplus) only within half a write step (25 W), so
battery energy sent to the grid halved while peak-rate import stayed where it was; most of what
is left of both is the lag of one meter period after a load steps (without any deadband: 44 Wh
and 291 Wh).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

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


def test_the_demo_day_at_the_demos_cadence() -> None:
    cfg = load_config(SEED)
    # As the demo relocates the scenario at 60x: lease and staleness long enough for its polls.
    cfg = cfg.model_copy(
        update={"dispatcher": cfg.dispatcher.model_copy(update={"stale_after_s": 1800.0, "lease_s": 1800.0})}
    )
    result, commands = figures(cfg, meter_s=120, inverter_s=300)
    print(f"demo cadence: {result.as_dict()}, {commands} commands")
    assert result.unplanned_battery_export_wh <= 300.0, result
    assert result.peak_import_wh <= 900.0, result
    assert result.opposite_sign_s <= 60.0, result


def test_the_demo_day_at_a_real_houses_cadence() -> None:
    result, commands = figures(load_config(SEED), meter_s=2, inverter_s=5)
    print(f"real cadence: {result.as_dict()}, {commands} commands")
    assert result.unplanned_battery_export_wh <= 60.0, result
    assert result.peak_import_wh <= 400.0, result
    assert result.opposite_sign_s <= 30.0, result


def test_an_hour_runs_a_control_cycle_per_meter_reading_within_the_limits() -> None:
    trace = simulate_day(load_config(SEED), DAY, hours=1.0, meter_s=2, inverter_s=5)
    assert len(trace.times) == 3600
    assert all(-3000.0 - 1e-6 <= b <= 3000.0 + 1e-6 for b in trace.battery_w)
    assert trace.commands > 0 and sum(trace.reasons.values()) == 3600 // 2
