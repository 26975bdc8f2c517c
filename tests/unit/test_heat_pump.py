"""Heat pump on spare battery (issue 13 item 3): the pure decision, step tables, and through control()."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.dispatcher.budgets import SAVE_EVERY_WH, BudgetFileError, load_budgets, save_budgets, save_due
from services.dispatcher.core.controller import ControlParams, Memory, battery_free, control
from services.dispatcher.core.heat_pump import Budget, battery_fed_wh, decide, in_window, period_start
from services.dispatcher.core.planner import Schedule
from services.dispatcher.core.snapshot import LoadReading, ModeState, Snapshot
from services.dispatcher.service import Dispatcher, budgets_path
from shared.config import ConfigError, OngridConfig, load_config
from shared.config.loads import HeatPumpLoad, RunWindow
from shared.energy.battery import BatteryModel
from shared.messages import DispatcherModeName, Intent

TZ = "Europe/London"
WINTER = datetime(2026, 1, 14, tzinfo=UTC)  # London is on UTC in January
SUMMER = datetime(2026, 7, 14, tzinfo=UTC)  # and on UTC+1 in July
NIGHT = RunWindow(start="18:00", end="07:00")


def hp(**kw) -> HeatPumpLoad:
    base = {"kind": "heat_pump", "id": "hp", "run_window": NIGHT, "battery_budget_kwh": 1.8, "min_soc_pct": 25}
    return HeatPumpLoad(**(base | kw))


def at(day: datetime, hhmm: str) -> datetime:
    h, m = hhmm.split(":")
    return day + timedelta(hours=int(h), minutes=int(m))


@pytest.mark.parametrize(
    ("utc", "inside"),
    [
        ("17:59", False),
        ("18:00", True),  # the start is inside
        ("23:59", True),
        ("00:00", True),  # across midnight
        ("06:59", True),
        ("07:00", False),  # the end is not
        ("12:00", False),
    ],
)
def test_window_crossing_midnight_winter(utc: str, inside: bool) -> None:
    assert in_window(NIGHT, at(WINTER, utc), TZ) is inside


def test_window_is_read_in_local_time() -> None:
    # 17:30 UTC in July is 18:30 in London: inside; 06:30 UTC is 07:30 local: outside.
    assert in_window(NIGHT, at(SUMMER, "17:30"), TZ)
    assert not in_window(NIGHT, at(SUMMER, "06:30"), TZ)
    day = RunWindow(start="10:00", end="16:00")  # a window not crossing midnight
    assert in_window(day, at(WINTER, "10:00"), TZ) and not in_window(day, at(WINTER, "16:00"), TZ)


def test_period_starts_at_the_window_start() -> None:
    load = hp()
    assert period_start(load, at(WINTER, "18:00"), TZ) == at(WINTER, "18:00")
    assert period_start(load, at(WINTER, "17:59"), TZ) == at(WINTER - timedelta(days=1), "18:00")
    assert period_start(load, at(WINTER + timedelta(days=1), "03:00"), TZ) == at(WINTER, "18:00")
    # In local time: 18:00 in London is 17:00 UTC in July.
    assert period_start(load, at(SUMMER, "20:00"), TZ) == at(SUMMER, "17:00")
    # 12 h periods from 18:00: 18:00-06:00 and 06:00-18:00.
    assert period_start(hp(budget_period_hours=12), at(WINTER, "07:00"), TZ) == at(WINTER, "06:00")
    # Without a window: local midnight.
    assert period_start(hp(run_window=None), at(SUMMER, "20:00"), TZ) == at(SUMMER, "23:00") - timedelta(days=1)


def test_budget_counting_with_and_without_its_own_ct() -> None:
    # Its CT says 1.5 kW, the battery gives 2 kW (the house takes the rest): 1.5 kW for an hour.
    assert battery_fed_wh(1500.0, 2000.0, True, 3600) == pytest.approx(1500.0)
    # The battery gives less than it draws: only what the battery gave counts.
    assert battery_fed_wh(1500.0, 400.0, True, 3600) == pytest.approx(400.0)
    assert battery_fed_wh(1500.0, -1000.0, True, 3600) == 0.0  # charging
    # No CT: the battery's whole discharge while it was on; nothing while it was off.
    assert battery_fed_wh(None, 2000.0, True, 1800) == pytest.approx(1000.0)
    assert battery_fed_wh(None, 2000.0, False, 1800) == 0.0


# One night, step by step: (UTC time, SoC %, battery W, heat pump CT W) -> (on, battery feeds, reason).
# 1.8 kWh budget, 25 % floor above a 20 % reserve; the battery feeds it 1.2 kW every 30 minutes.
NIGHT_STEPS = [
    ("0 17:30", 60, 0, 0, None, True, "heat_pump_surplus"),  # before the window: the surplus decides
    ("0 18:00", 60, 0, 0, True, True, "heat_pump_window"),  # window opens: on, from the battery
    ("0 18:30", 58, 1200, 1200, True, True, "heat_pump_window"),  # 0.6 kWh used
    ("0 19:00", 56, 1200, 1200, True, True, "heat_pump_window"),  # 1.2 kWh
    ("0 19:30", 54, 1200, 1200, False, False, "heat_pump_budget_spent"),  # 1.8 kWh: spent
    ("1 03:00", 50, 300, 0, False, False, "heat_pump_budget_spent"),  # across midnight, still spent
    ("1 07:00", 50, 0, 0, None, False, "heat_pump_surplus"),  # window closed, budget still spent
    ("1 18:00", 49, 0, 0, True, True, "heat_pump_window"),  # next evening: a new period
]


@pytest.mark.parametrize("after_budget", ["off", "grid"])
def test_one_night_budget_then_after_budget(after_budget: str) -> None:
    load = hp(after_budget=after_budget)
    budget: Budget | None = None
    last: datetime | None = None
    was_on = False
    for when, soc, battery, power, on, feeds, reason in NIGHT_STEPS:
        days, hhmm = when.split()
        now = at(WINTER + timedelta(days=int(days)), hhmm)
        call = decide(
            load,
            budget,
            now=now,
            timezone=TZ,
            soc_pct=soc,
            reserve_pct=20,
            battery_w=battery,
            power_w=power,
            was_on=was_on,
            dt_s=0 if last is None else (now - last).total_seconds(),
        )
        if after_budget == "grid" and on is False:
            # 'grid': left on, the battery no longer feeds it.
            expected = (True, False, reason + "_grid")
        else:
            expected = (on, feeds, reason)
        assert (call.on, call.battery_feeds, call.reason) == expected, when
        budget, last, was_on = call.budget, now, bool(call.on)
    assert budget is not None and budget.used_wh == 0.0  # the new period started empty


def test_soc_floor_with_hysteresis() -> None:
    load = hp()
    night = at(WINTER, "22:00")
    rows = [  # (SoC, on, feeds, reason)
        (30, True, True, "heat_pump_window"),
        (25.5, True, True, "heat_pump_window"),  # still above 25 %
        (25, False, False, "heat_pump_soc_floor"),  # floor reached
        (26, False, False, "heat_pump_soc_floor"),  # not 2 points above it yet
        (27, True, True, "heat_pump_window"),  # e.g. charged from the cheap night rate
    ]
    budget = None
    for i, (soc, on, feeds, reason) in enumerate(rows):
        call = decide(
            load, budget, now=night + timedelta(minutes=i), timezone=TZ, soc_pct=soc, reserve_pct=20,
            battery_w=0, power_w=0, was_on=True, dt_s=60,
        )  # fmt: skip
        assert (call.on, call.battery_feeds, call.reason) == (on, feeds, reason), soc
        budget = call.budget


def test_the_dispatcher_reserve_is_a_floor_too() -> None:
    # A heat pump floor below the reserve: the reserve (30 %) stops it.
    call = decide(
        hp(min_soc_pct=10), None, now=at(WINTER, "22:00"), timezone=TZ, soc_pct=30.5, reserve_pct=30,
        battery_w=0, power_w=None, was_on=False, dt_s=0,
    )  # fmt: skip
    assert (call.on, call.reason) == (False, "heat_pump_soc_floor")


def test_config_errors_name_the_key_and_value(tmp_path) -> None:
    for window, text in (({"start": "18:00", "end": "7am"}, "'7am' is not a time of day HH:MM"),
                         ({"start": "18:00", "end": "18:00"}, "both '18:00'")):  # fmt: skip
        path = tmp_path / "ongrid.yaml"
        path.write_text(
            "loads:\n  - {id: hp, kind: heat_pump, run_window: "
            + str(window).replace("'", '"')
            + ", after_budget: off}\n"
        )
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert "loads.0.heat_pump.run_window" in str(info.value) and text in str(info.value)
    path.write_text("loads:\n  - {id: hp, kind: heat_pump, after_budget: battery}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "loads.0.heat_pump.after_budget: Input should be 'off' or 'grid' (got 'battery')" in str(info.value)
    # A bare YAML ``off`` (read as false) means 'off'.
    path.write_text("loads:\n  - {id: hp, kind: heat_pump, after_budget: off}\n")
    assert load_config(path).loads[0].after_budget == "off"  # type: ignore[union-attr]


# -- through the controller: the battery covers it in the window, then holds -------------------

BATTERY = BatteryModel(
    capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000, floor_pct=10, reserve_pct=20, ceiling_pct=97
)
SELF = ModeState(DispatcherModeName.SELF_USE)


def night_run(load: HeatPumpLoad, metered: bool = True) -> list[tuple[float, bool]]:
    """A winter night from 17:50, one update a minute: 300 W house, the heat pump 1.5 kW when on."""
    params = ControlParams(
        battery=BATTERY, ramp_w_per_s=1000.0, loads=(load,), timezone=TZ, inverter_self_use=False
    )
    memory, battery_w, on = Memory(), 0.0, False
    out = []
    for k in range(150):
        now = at(WINTER, "17:50") + timedelta(minutes=k)
        hp_w = 1500.0 if on else 0.0
        s = Snapshot(
            now=now, soc_pct=60, battery_w=battery_w, grid_w=300 + hp_w - battery_w, mode=SELF,
            inverter_at=now, meter_at=now, loads=(LoadReading("hp", hp_w),) if metered else (),
        )  # fmt: skip
        decision, memory = control(s, None, memory, params)
        battery_w, on = decision.battery_w, decision.loads_on["hp"]
        out.append((battery_w, on))
    return out


def test_control_runs_it_from_the_battery_then_off() -> None:
    trace = night_run(hp(battery_budget_kwh=1.0))
    assert not any(on for _, on in trace[:10])  # 17:50-17:59: no surplus, outside the window
    assert trace[10][1]  # 18:00: switched on
    assert all(w >= 1750 for w, on in trace[12:30])  # the battery covers house and heat pump
    off = next(k for k, (_, on) in enumerate(trace) if k > 10 and not on)
    # 1.0 kWh at 1.5 kW: 40 minutes.
    assert 48 <= off <= 53, off
    assert all(not on and w == 300 for w, on in trace[off + 1 :])  # off, the battery covers the house


def test_control_after_budget_grid_the_battery_holds() -> None:
    trace = night_run(hp(battery_budget_kwh=1.0, after_budget="grid"))
    assert all(on for _, on in trace[10:])  # on all night
    assert trace[-1][0] == 300  # the battery covers the house only; the heat pump draws from the grid


def test_control_without_its_own_ct() -> None:
    # No CT: the budget counts the battery's whole discharge (1.8 kW here), so it runs out sooner
    # (1.0 kWh / 1.8 kW: ~33 min); after it, with 'grid', the battery holds.
    trace = night_run(hp(battery_budget_kwh=1.0, after_budget="grid"), metered=False)
    assert trace[20][0] >= 1750
    assert trace[-1] == (0.0, True)


# -- only on the battery's spare: not while the plan or the mode holds or charges it -------------


@pytest.mark.parametrize(
    ("after_budget", "expected"),
    [("off", (False, False, "heat_pump_battery_held")), ("grid", (True, False, "heat_pump_battery_held_grid"))],
)
def test_battery_held_by_the_plan(after_budget: str, expected: tuple[bool, bool, str]) -> None:
    call = decide(
        hp(after_budget=after_budget), None, now=at(WINTER, "22:00"), timezone=TZ, soc_pct=60, reserve_pct=20,
        battery_w=0, power_w=0, was_on=True, dt_s=60, battery_free=False,
    )  # fmt: skip
    assert (call.on, call.battery_feeds, call.reason) == expected
    assert call.left_wh == 1800.0  # nothing spent: the budget waits for the battery


def schedule(intents: list[Intent]) -> Schedule:
    n = len(intents)
    return Schedule(
        start=at(WINTER, "18:00"), step_s=1800, soc_pct_start=50, battery_w=np.zeros(n), grid_w=np.zeros(n),
        soc_pct_end=np.full(n, 50.0), intents=tuple(intents), import_price=np.zeros(n), export_price=np.zeros(n),
        pv_w=np.zeros(n), load_w=np.zeros(n), cost=0.0, objective=0.0, solver="lp",
    )  # fmt: skip


def test_battery_free_by_mode_and_plan_step() -> None:
    plan = schedule([Intent.SELF_USE, Intent.HOLD, Intent.CHARGE, Intent.DISCHARGE])
    s = Snapshot(now=at(WINTER, "18:10"), soc_pct=50, battery_w=0, grid_w=0)
    auto = DispatcherModeName.AUTO
    assert battery_free(auto, s, plan)
    assert not battery_free(auto, replace(s, now=at(WINTER, "18:40")), plan)  # a held step
    assert not battery_free(auto, replace(s, now=at(WINTER, "19:10")), plan)  # a grid charge
    assert battery_free(auto, replace(s, now=at(WINTER, "19:40")), plan)
    assert battery_free(auto, replace(s, now=at(WINTER, "21:00")), plan)  # beyond the plan: self-use
    assert battery_free(auto, s, None)
    assert not battery_free(DispatcherModeName.HOLD, s, plan)
    assert not battery_free(DispatcherModeName.FORCE_CHARGE, s, None)
    assert battery_free(DispatcherModeName.SELF_USE, replace(s, now=at(WINTER, "18:40")), plan)


# -- the budgets survive a restart ---------------------------------------------------------------


def test_budgets_saved_and_restored(tmp_path) -> None:
    path = tmp_path / "state" / "budgets.json"
    assert load_budgets(path) == ()
    spent = (Budget("hp", period_start(hp(), at(WINTER, "20:00"), TZ), 1234.5, True),)
    save_budgets(path, spent)
    again = load_budgets(path)
    assert again == spent  # the same instant, whatever the zone it is written in
    # A restarted dispatcher goes on counting the same period from what was used.
    call = decide(
        hp(), again[0], now=at(WINTER, "21:00"), timezone=TZ, soc_pct=60, reserve_pct=20,
        battery_w=1000, power_w=1000, was_on=True, dt_s=1800,
    )  # fmt: skip
    assert call.left_wh == pytest.approx(1800 - 1234.5 - 500)
    path.write_text('{"version": 1, "budgets": [{"load": "hp"}]}')
    with pytest.raises(BudgetFileError, match="budget 0 is not"):
        load_budgets(path)
    path.write_text("[")
    with pytest.raises(BudgetFileError, match="not JSON"):
        load_budgets(path)
    for body in ("null", "5", '"hp"'):  # valid JSON of the wrong shape: an error the service moves aside
        path.write_text(f'{{"version": 1, "budgets": {body}}}')
        with pytest.raises(BudgetFileError, match="budgets is not a list"):
            load_budgets(path)


def test_budgets_saved_when_moved_enough() -> None:
    start = at(WINTER, "18:00")
    saved = (Budget("hp", start, 100.0, True),)
    assert not save_due(saved, (Budget("hp", start, 100.0 + SAVE_EVERY_WH / 2, True),))
    assert save_due(saved, (Budget("hp", start, 100.0 + SAVE_EVERY_WH, True),))
    assert save_due(saved, (Budget("hp", start, 100.0, False),))  # the floor reached
    assert save_due(saved, (Budget("hp", start + timedelta(days=1), 0.0, True),))  # a new period
    assert save_due((), saved)


def test_the_dispatcher_starts_from_the_saved_budgets(tmp_path) -> None:
    cfg = OngridConfig.model_validate(
        {
            "inverters": [{"id": "inv1", "model": "sofar_me3000sp", "battery": "bat1",
                           "transport": {"kind": "modbus_tcp", "host": "127.0.0.1"}}],
            "batteries": [{"id": "bat1", "usable_kwh": 10.4, "transport": {"kind": "modbus_tcp", "host": "127.0.0.1"}}],
            "dispatcher": {"state_dir": str(tmp_path)},
            "loads": [{"id": "hp", "kind": "heat_pump", "run_window": {"start": "18:00", "end": "07:00"}}],
        }
    )  # fmt: skip
    spent = (Budget("hp", at(WINTER, "18:00"), 1800.0, False),)
    save_budgets(budgets_path(cfg), spent)
    assert Dispatcher(cfg, bus=None).memory.budgets == spent  # type: ignore[arg-type]
    budgets_path(cfg).write_text("not json")
    assert Dispatcher(cfg, bus=None).memory.budgets == ()  # type: ignore[arg-type]
    assert [p.name for p in tmp_path.iterdir() if ".bad-" in p.name]  # moved aside, not lost
