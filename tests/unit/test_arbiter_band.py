"""The arbiter and the controller agree on whether the battery may charge or discharge now.

The controller stops charging at the ceiling and discharging at the reserve with a 1-point
hysteresis (``soc_limits.band_stops``, ``Memory.band_stopped``). The arbiter, which shares the
surplus out between the battery and the flexible loads and decides whether a heat pump in its window
runs from the battery, must use the same pair: a battery whose charging is stopped has no charging
headroom (an EV behind it gets the surplus, not the grid), and one whose discharge is stopped does
not feed a heat pump. Step tables through ``control`` at both edges.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.dispatcher.core.controller import ControlParams, Memory, control
from services.dispatcher.core.heat_pump import Budget, period_start
from services.dispatcher.core.snapshot import LoadReading, ModeState, Snapshot
from shared.config.loads import EvLoad, HeatPumpLoad, RunWindow
from shared.energy.battery import BatteryModel
from shared.messages import DispatcherModeName as M

T0 = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
B = BatteryModel(
    capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000, floor_pct=10, reserve_pct=20, ceiling_pct=97
)
SELF = ModeState(M.SELF_USE)
EV = EvLoad(kind="ev", id="ev", meter="ev", priority=20, min_power_w=1400, rated_power_w=3000)
EV_PARAMS = ControlParams(battery=B, loads=(EV,), dwell_s=0, ramp_w_per_s=1000)
HP = HeatPumpLoad(
    kind="heat_pump", id="hp", meter="hp", min_soc_pct=15, rated_power_w=2000,
    run_window=RunWindow(start="11:00", end="13:00"), after_budget="off",
)  # fmt: skip
HP_PARAMS = ControlParams(battery=B, loads=(HP,), dwell_s=0, ramp_w_per_s=1000)


def _snap(t: float, soc: float, battery: float, grid: float, load: tuple[str, float]) -> Snapshot:
    now = T0 + timedelta(seconds=t)
    return Snapshot(
        now=now, soc_pct=soc, battery_w=battery, grid_w=grid, mode=SELF, inverter_at=now, meter_at=now,
        loads=(LoadReading(*load),),
    )  # fmt: skip


def test_the_reviewers_case_charging_stopped_is_no_headroom() -> None:
    """Ceiling 97, SoC 96.5 with the charge stopped, 2.5 kW exported: the EV takes it, as at 97.0."""
    stopped = Memory(band_stopped=(False, True))
    for soc in (96.5, 97.0):
        decision, memory = control(_snap(0, soc, 0.0, -2500.0, ("ev", 0.0)), None, stopped, EV_PARAMS)
        assert decision.battery_w == 0.0, soc
        assert decision.loads_on == {"ev": True}, soc
        assert memory.band_stopped == (False, True)


@pytest.mark.parametrize(
    ("socs", "expected"),
    [
        # 2.5 kW of surplus; the battery (priority 10) before the EV (20). At the ceiling the charge
        # stops and the EV takes the surplus; it keeps it until the SoC is 1 point below the ceiling
        # (the charge resumes at 96.0), not only at the readings at 97 (before: EV off at 96.5 and
        # 96.2 with the battery held at 0, 2.5 kW exported).
        (
            [95.0, 96.5, 97.0, 96.5, 96.2, 96.0, 95.5],
            [(-2500.0, False), (-2500.0, False), (0.0, True), (0.0, True), (0.0, True), (-2500.0, False),
             (-2500.0, False)],
        ),
    ],
)  # fmt: skip
def test_surplus_goes_to_the_ev_while_the_ceiling_holds_the_charge(
    socs: list[float], expected: list[tuple[float, bool]]
) -> None:
    surplus = 2500.0
    memory, battery, ev, got = Memory(), 0.0, 0.0, []
    for i, soc in enumerate(socs):
        grid = -surplus - battery + ev
        decision, memory = control(_snap(10 * i, soc, battery, grid, ("ev", ev)), None, memory, EV_PARAMS)
        on = decision.loads_on["ev"]
        got.append((decision.battery_w, on))
        battery = decision.battery_w  # commanded, or the inverter's own self-use zeroing the grid
        # A solar EV charger follows what is left, between its minimum and its rating.
        ev = min(max(surplus + battery, EV.min_power_w), EV.rated_power_w) if on else 0.0
    assert got == expected


def test_no_heat_pump_on_the_battery_while_the_reserve_holds_the_discharge() -> None:
    """In its window, with budget left and above its floor (the reserve here), a heat pump runs from
    the battery; while the reserve still holds the discharge (SoC 20.5, stopped at 20, resumes at
    21) the battery will not feed it, so under ``after_budget: off`` it is off, as at the reserve."""
    budget = Budget("hp", period_start(HP, T0, "UTC"), used_wh=100.0, feeding=True)
    for soc, stopped, on, reason in [
        (20.5, (True, False), False, "heat_pump_battery_held"),
        (20.0, (True, False), False, "heat_pump_soc_floor"),
        (21.0, (True, False), True, "heat_pump_window"),
        (20.5, (False, False), True, "heat_pump_window"),
    ]:
        memory = Memory(band_stopped=stopped, budgets=(budget,), loads_on=(("hp", True),), at=T0)
        decision, _ = control(_snap(10, soc, 0.0, 2300.0, ("hp", 2000.0)), None, memory, HP_PARAMS)
        assert decision.loads_on == {"hp": on}, soc
        assert decision.load_reasons["hp"] == reason, soc
        if on:
            assert decision.battery_w >= 2000.0, soc  # the battery feeds it
        else:
            assert decision.battery_w <= 300.0, soc  # the house at most
