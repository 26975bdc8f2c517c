"""The backtest with a CT-driven immersion diverter as a flexible load (issue 13 item 2).

Two spring-like days at 1-minute steps: PV up to 2.5 kW, a 300 W house with a 2 kW kettle for three
minutes every half hour and an evening cooker cycling 1.5 kW. The diverter (no relay) takes the
export its own clamp sees within the step, so the controller finds the grid already pinned at the
diverter's margin: with nothing to tell them apart the battery drains into the tank. Battery
energy into the tank over the two days, measured (self_use):

| configuration | battery -> tank | target |
|---|---|---|
| no CT, guard off (``detect_without_ct: false``): the naive controller | 4.06 kWh | (the baseline, >= 3 kWh) |
| no CT, guard on (the default for ``meter: null``) | 0.81 kWh (was 1.11) | <= 25 % of the baseline |
| its own CT (``meter``): left out of the battery's target | 0.78 kWh | <= 25 % of the baseline |

What the guard and the CT leave is the step's lag: the diverter reacts within a data step, the
controller at the next.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.backtest.data import Series
from services.backtest.engine import Setup, simulate
from services.backtest.flexible import DIVERTER_TANK_KWH
from services.dispatcher.core.forecast import PvArray
from shared.config.dispatcher import DispatcherConfig
from shared.config.loads import DiverterLoad
from shared.config.tariff import TariffConfig
from shared.energy.battery import BatteryModel
from shared.energy.tariff import tariff_from_config


def days() -> Series:
    times = pd.date_range("2026-04-21T00:00Z", periods=2 * 1440, freq="60s")
    minute = np.arange(len(times)) % 1440
    pv = np.clip(2500 * np.sin(np.pi * (minute - 360) / 840), 0, None)
    load = np.full(len(times), 300.0)
    load[(minute % 30) < 3] += 2000.0  # the kettle
    load[(minute >= 1050) & (minute < 1320) & ((minute % 10) < 6)] += 1500.0  # the cooker
    return Series(times, load, pv, 60)


def setup(**diverter: object) -> Setup:
    load = DiverterLoad.model_validate({"kind": "diverter", "id": "immersion"} | diverter)
    battery = BatteryModel(
        capacity_wh=10_000, max_charge_w=3000, max_discharge_w=3000, floor_pct=10, reserve_pct=20, ceiling_pct=97
    )
    tariff = tariff_from_config(TariffConfig.model_validate({"export": {"kind": "flat", "price_per_kwh": 0.05}}))
    return Setup(
        battery, DispatcherConfig(horizon_hours=24), tariff, "Europe/London", PvArray(0, 30, 180, 53.6, -0.5),
        loads=(load,),
    )  # fmt: skip


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, float]]:
    runs = {"naive": {"detect_without_ct": False}, "guard": {}, "ct": {"meter": "immersion-ct"}}
    out = {}
    for name, kw in runs.items():
        r = simulate(days(), "self_use", setup(**kw))
        balance = r.pv_kwh + r.import_kwh - r.export_kwh + r.discharge_kwh - r.charge_kwh - r.load_kwh
        assert abs(balance) < 1e-6, (name, balance)
        print(name, r.flexible)
        out[name] = r.flexible["immersion"]
    return out


def test_the_naive_controller_drains_the_battery_into_the_tank(results: dict[str, dict[str, float]]) -> None:
    naive = results["naive"]
    assert naive["from_battery_kwh"] >= 3.0
    # The tank fills each day whichever way: only where its heat comes from changes.
    for r in results.values():
        assert 2 * DIVERTER_TANK_KWH - 0.1 <= r["kwh"] <= 2 * DIVERTER_TANK_KWH + 0.1


def test_the_guard_without_a_ct_and_the_ct_keep_the_battery_out(results: dict[str, dict[str, float]]) -> None:
    naive = results["naive"]["from_battery_kwh"]
    assert results["guard"]["from_battery_kwh"] <= 0.25 * naive
    assert results["ct"]["from_battery_kwh"] <= 0.25 * naive


def test_a_diverter_behind_a_relay_that_is_off_draws_nothing() -> None:
    # Ranked below the battery and switched by the dispatcher: off while the battery takes the surplus.
    r = simulate(days(), "self_use", setup(switch_topic="relay/immersion", meter="immersion-ct", priority=90))
    assert r.flexible["immersion"]["kwh"] < 2 * DIVERTER_TANK_KWH
