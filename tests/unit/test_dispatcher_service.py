"""The live dispatcher's glue, pure parts: when a command goes out, ack bookkeeping, modes, load
switches, the persisted history and the planner's inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher import modes
from services.dispatcher.commands import AckLedger, Sent, build_command, command_due, handback_command
from services.dispatcher.core.planner import plan
from services.dispatcher.history import History, HistoryFileError
from services.dispatcher.inputs import build_inputs, external_values, plan_error_pct, step_starts
from services.dispatcher.loads_io import switches
from shared.config import OngridConfig
from shared.config.loads import DiverterLoad, HeatPumpLoad
from shared.energy.battery import BatteryModel
from shared.energy.tariff import tariff_from_config
from shared.messages import (
    AckStatus,
    CommandAck,
    CommandMode,
    DispatcherMode,
    DispatcherModeName,
    Forecast,
    ForecastPoint,
    ModeRequest,
)

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
LEASE = 120.0


def sent(mode: CommandMode, power: float, at: datetime = T0) -> Sent:
    return Sent("c1", mode, power, at, LEASE)


# -- command_due: a step table over time -------------------------------------------------------


def test_command_only_on_change_or_renewal() -> None:
    """Inputs over time -> whether a command goes out. Meter ticks every 2 s, lease 120 s."""
    last: Sent | None = None
    table = [
        # (seconds, wanted, battery_w, expected reason)
        (0, CommandMode.CHARGE, -1500.0, "start"),
        (2, CommandMode.CHARGE, -1500.0, None),
        (4, CommandMode.CHARGE, -1500.0, None),
        (30, CommandMode.CHARGE, -1500.0, None),
        (40, CommandMode.CHARGE, -1500.0, "renew"),  # a third of the lease
        (42, CommandMode.CHARGE, -1550.0, "changed"),
        (44, CommandMode.CHARGE, -1550.0, None),
        (50, CommandMode.STANDBY, 0.0, "changed"),
        (60, CommandMode.DISCHARGE, 800.0, "changed"),
        (62, None, 0.0, "handback"),
        (64, None, 0.0, None),  # one hand-back, then the lease is left to lapse
        (500, None, 0.0, None),
        (502, CommandMode.DISCHARGE, 800.0, "start"),
    ]
    for seconds, wanted, battery_w, expected in table:
        now = T0 + timedelta(seconds=seconds)
        why = command_due(last, wanted, battery_w, now)
        assert why == expected, f"at {seconds} s: {why} != {expected}"
        if why is not None:
            command = (
                handback_command(now, LEASE, "stale")
                if wanted is None
                else build_command(wanted, battery_w, now, LEASE, "plan_track")
            )
            last = Sent.of(command)


def test_nothing_to_hand_back_when_nothing_was_commanded() -> None:
    assert command_due(None, None, 0.0, T0) is None


@settings(max_examples=200, deadline=None)
@given(
    setpoints=st.lists(st.sampled_from([-3000.0, -1500.0, 0.0, 1500.0]), min_size=1, max_size=200),
    tick_s=st.floats(min_value=0.5, max_value=10.0),
)
def test_commands_are_at_most_changes_plus_renewals(setpoints: list[float], tick_s: float) -> None:
    """Whatever the meter cadence, commands = setpoint changes + lease renewals, never one a tick."""
    last: Sent | None = None
    count = changes = 0
    previous: float | None = None
    for i, setpoint in enumerate(setpoints):
        now = T0 + timedelta(seconds=i * tick_s)
        wanted = CommandMode.CHARGE if setpoint < 0 else CommandMode.DISCHARGE if setpoint > 0 else CommandMode.STANDBY
        changes += int(previous != setpoint)
        previous = setpoint
        why = command_due(last, wanted, setpoint, now)
        if why is not None:
            count += 1
            last = Sent.of(build_command(wanted, setpoint, now, LEASE, None))
        assert last is not None
        # The bridge always holds a lease that has not lapsed.
        assert (now - last.at).total_seconds() < LEASE / 3 + 1e-9 or why == "renew"
    renewals_max = int(len(setpoints) * tick_s / (LEASE / 3)) + 1
    assert count <= changes + renewals_max


def test_command_carries_lease_expiry_and_magnitude() -> None:
    command = build_command(CommandMode.CHARGE, -1234.0, T0, LEASE, "plan_track")
    assert command.power_w == 1234.0
    assert command.lease_s == LEASE
    assert command.expires_at == T0 + timedelta(seconds=LEASE / 3)
    assert build_command(CommandMode.STANDBY, 0.0, T0, LEASE, None).power_w == 0.0
    back = handback_command(T0, LEASE, "stale_inputs")
    assert back.mode is CommandMode.SELF_USE and back.reason == "stale_inputs"


# -- acks --------------------------------------------------------------------------------------


def ack(command_id: str | None, status: AckStatus, **extra: object) -> CommandAck:
    return CommandAck(ts=T0, command_id=command_id, device="inv1", status=status, **extra)  # type: ignore[arg-type]


def test_ack_ledger_reports_refusals_of_our_commands_only() -> None:
    ledger = AckLedger()
    ours = build_command(CommandMode.CHARGE, -1000.0, T0, LEASE, None)
    ledger.sent(ours)
    assert ledger.answer(ack(ours.id, AckStatus.ACCEPTED)) is None
    problem = ledger.answer(ack(ours.id, AckStatus.ACCEPTED, verified=False, reason="battery_power_w 0 W"))
    assert problem is not None and "battery_power_w 0 W" in problem.describe()
    refused = build_command(CommandMode.DISCHARGE, 500.0, T0, LEASE, None)
    ledger.sent(refused)
    problem = ledger.answer(ack(refused.id, AckStatus.REJECTED, reason="write budget exhausted"))
    assert problem is not None
    assert problem.describe() == f"discharge command {refused.id} rejected by the bridge: write budget exhausted"
    assert ledger.answer(ack("someone-else", AckStatus.REJECTED, reason="x")) is None
    # A payload the bridge could not read at all has no id: still worth reporting.
    assert ledger.answer(ack(None, AckStatus.ERROR, reason="invalid payload")) is not None


# -- modes -------------------------------------------------------------------------------------


def test_mode_restore_keeps_retained_unless_expired() -> None:
    retained = DispatcherMode(ts=T0, mode=DispatcherModeName.HOLD, until=T0 + timedelta(hours=1), set_by="mqtt")
    assert modes.restored(retained, "auto", T0 + timedelta(minutes=10)) is retained
    late = modes.restored(retained, "self_use", T0 + timedelta(hours=2))
    assert late.mode is DispatcherModeName.SELF_USE and late.set_by == "expired"
    fresh = modes.restored(None, "auto", T0)
    assert fresh.mode is DispatcherModeName.AUTO and fresh.set_by == "default"


def test_until_expiry() -> None:
    request = ModeRequest(ts=T0, mode=DispatcherModeName.FORCE_CHARGE, until=T0 + timedelta(minutes=5))
    mode = modes.from_request(request, T0)
    assert not modes.expired(mode, T0 + timedelta(minutes=4, seconds=59))
    assert modes.expired(mode, T0 + timedelta(minutes=5))
    assert not modes.expired(modes.default_mode("auto", T0), T0 + timedelta(days=400))


def test_mode_requests_checked() -> None:
    past = ModeRequest(ts=T0, mode=DispatcherModeName.HOLD, until=T0 - timedelta(seconds=1))
    assert "not in the future" in (modes.check_request(past, T0) or "")
    odd = ModeRequest(ts=T0, mode=DispatcherModeName.HOLD, target_soc_pct=80)
    assert "target_soc_pct" in (modes.check_request(odd, T0) or "")
    ok = ModeRequest(ts=T0, mode=DispatcherModeName.FORCE_CHARGE, target_soc_pct=80, power_w=2000)
    assert modes.check_request(ok, T0) is None
    state = modes.from_request(ok, T0)
    assert (state.mode, state.target_soc_pct, state.power_w, state.set_by) == (
        DispatcherModeName.FORCE_CHARGE,
        80,
        2000,
        "mqtt",
    )


# -- load switches -----------------------------------------------------------------------------


def test_load_switches_only_on_change() -> None:
    loads = (
        DiverterLoad(kind="diverter", id="immersion", switch_topic="tasmota/cmnd/immersion/POWER"),
        HeatPumpLoad(kind="heat_pump", id="hp", payload_on="1", payload_off="0"),
    )
    published: dict[str, bool] = {}
    first = switches(loads, {"immersion": True, "hp": False}, published, T0, budget_left_wh={"hp": 1800.0})
    assert [(s.load.id, s.on, s.payload) for s in first] == [("immersion", True, "ON"), ("hp", False, "0")]
    assert first[1].state.battery_budget_left_wh == 1800.0
    published.update({s.load.id: s.on for s in first})
    assert switches(loads, {"immersion": True, "hp": False}, published, T0) == []
    flip = switches(loads, {"immersion": False, "hp": False}, published, T0)
    assert [(s.load.id, s.payload) for s in flip] == [("immersion", "OFF")]
    # Not commanding: the decision names no load, nothing is touched.
    assert switches(loads, {}, published, T0) == []


# -- history -----------------------------------------------------------------------------------


def test_history_means_per_step_and_survives_a_restart(tmp_path: Path) -> None:
    h = History(1800)
    assert h.add(T0, 400.0, 1000.0)
    assert not h.add(T0 + timedelta(minutes=10), 600.0, 0.0)
    assert h.add(T0 + timedelta(minutes=30), 100.0, 0.0)  # a new step: the first is complete
    starts, load, pv = h.complete(T0 + timedelta(minutes=31))
    assert list(starts) == [pd.Timestamp(T0)]
    assert load.tolist() == [500.0] and pv.tolist() == [500.0]
    path = tmp_path / "state" / "history.json"
    h.save(path)
    again = History.load(path, 1800)
    assert again.to_json() == h.to_json()
    with pytest.raises(HistoryFileError, match="step_s=1800"):
        History.load(path, 900)
    path.write_text("{not json")
    with pytest.raises(HistoryFileError, match="not JSON"):
        History.load(path, 1800)
    assert History.load(tmp_path / "missing.json", 1800).slots == {}


def test_history_keeps_four_weeks() -> None:
    h = History(3600, keep_days=28)
    for hour in range(24 * 30):
        h.add(T0 + timedelta(hours=hour), 300.0, 0.0)
    assert len(h.slots) == 28 * 24


# -- planner inputs ----------------------------------------------------------------------------


def config(**dispatcher: object) -> OngridConfig:
    return OngridConfig.model_validate(
        {
            "tariff": {
                "timezone": "Europe/London",
                "import": {
                    "kind": "two_rate",
                    "off_peak": {"start": "00:30", "end": "07:30", "price_per_kwh": 0.09},
                    "peak_price_per_kwh": 0.30,
                },
                "export": {"kind": "flat", "price_per_kwh": 0.05},
            },
            "dispatcher": {"step_minutes": 30, "horizon_hours": 24, **dispatcher},
        }
    )


BATTERY = BatteryModel(
    capacity_wh=10_400, max_charge_w=3000, max_discharge_w=3000, floor_pct=10, reserve_pct=20, ceiling_pct=97
)


def test_external_forecast_resampled_to_steps() -> None:
    starts = step_starts(T0 + timedelta(minutes=7), 1800, 4)
    assert starts[0] == pd.Timestamp(T0)
    hourly = Forecast(
        ts=T0,
        kind="pv",
        step_s=3600,
        points=(ForecastPoint(start=T0, power_w=1000.0), ForecastPoint(start=T0 + timedelta(hours=1), power_w=2000.0)),
    )
    values = external_values(hourly, starts, 1800)
    assert values.tolist() == [1000.0, 1000.0, 2000.0, 2000.0]
    late = Forecast(ts=T0, kind="pv", step_s=1800, points=(ForecastPoint(start=T0 + timedelta(hours=1), power_w=5.0),))
    assert np.isnan(external_values(late, starts, 1800)[:2]).all()


def test_inputs_default_load_then_history_and_external_pv() -> None:
    cfg = config(pv_forecast="external", default_daily_load_kwh=12.0)
    tariff = tariff_from_config(cfg.tariff)
    now = datetime(2026, 1, 14, 23, 40, tzinfo=UTC)
    inputs, fc = build_inputs(cfg, BATTERY, tariff, History(1800), now, 40.0, 0.0)
    assert inputs.start == datetime(2026, 1, 14, 23, 30, tzinfo=UTC)
    assert inputs.steps == 48
    assert fc.load_source == "default" and fc.pv_source == "clear_sky"
    assert abs(inputs.load_w.sum() * 0.5 / 1000 - 12.0) < 0.5  # the default shape over a day
    # Economy 7 in January (UTC = local): 00:30-07:30 cheap.
    assert inputs.import_price[2] == 0.09 and inputs.import_price[1] == 0.30 and inputs.import_price[16] == 0.30
    history = History(1800)
    for k in range(48 * 7):
        history.add(now - timedelta(minutes=30 * (k + 1)), 777.0, 0.0)
    pv = Forecast(ts=now, kind="pv", step_s=1800, points=tuple(
        ForecastPoint(start=datetime(2026, 1, 14, 23, 30, tzinfo=UTC) + timedelta(minutes=30 * k), power_w=123.0)
        for k in range(48)
    ))
    inputs, fc = build_inputs(cfg, BATTERY, tariff, history, now, 40.0, 0.0, pv_external=pv)
    assert fc.load_source == "history" and fc.pv_source == "external"
    assert np.allclose(inputs.load_w, 777.0) and np.allclose(inputs.pv_w, 123.0)


def test_tariff_day_plan_charges_in_the_cheap_window() -> None:
    """The e2e test's premise, pure: with a 9p night and a 5p export, the plain LP charges at night."""
    cfg = config(default_daily_load_kwh=14.0, pv_kwp=0.5)
    now = datetime(2026, 1, 14, 23, 30, tzinfo=UTC)
    inputs, _ = build_inputs(cfg, BATTERY, tariff_from_config(cfg.tariff), History(1800), now, 40.0, 0.0)
    schedule = plan(inputs)
    assert schedule.solver == "lp"
    night = slice(2, 16)  # 00:30-07:30
    assert schedule.battery_w[night].sum() < -3000  # charging, W summed over steps
    assert schedule.battery_w[16:34].sum() > 0  # discharging in the day's peak


def test_forecast_error_against_history() -> None:
    cfg = config()
    now = datetime(2026, 1, 15, 19, 0, tzinfo=UTC)  # dark: the net load is the load
    inputs, _ = build_inputs(cfg, BATTERY, tariff_from_config(cfg.tariff), History(1800), now, 50.0, 0.0)
    schedule = plan(inputs)
    history = History(1800)
    assert plan_error_pct(schedule, history, now + timedelta(minutes=40)) is None
    k = 0
    forecast_net = float(schedule.load_w[k] - schedule.pv_w[k])
    history.add(now + timedelta(minutes=5), forecast_net * 3 + 0.0, 0.0)
    history.add(now + timedelta(minutes=31), 0.0, 0.0)
    error = plan_error_pct(schedule, history, now + timedelta(minutes=31))
    forecast_wh = forecast_net * 0.5
    expected = abs(2 * forecast_wh) / max(abs(forecast_wh), 200.0) * 100.0  # the 200 Wh floor of the core
    assert error is not None and error == pytest.approx(expected, rel=1e-6) and error > 30.0


@pytest.mark.parametrize(
    "body",
    ['"slots": null', '"slots": 5', '"slots": [[1e999, 1.0, 1.0, 1]]', '"slots": [[1, 1.0, 1.0, 1e999]]'],
)
def test_a_history_file_of_the_wrong_shape_is_a_history_file_error(tmp_path: Path, body: str) -> None:
    # Valid JSON, right version, wrong shape: the service moves a HistoryFileError aside; anything
    # else (a TypeError, an OverflowError from int(inf)) ended the dispatcher at every start.
    path = tmp_path / "history.json"
    path.write_text(f'{{"version": 1, "step_s": 1800, {body}}}')
    with pytest.raises(HistoryFileError, match=r"history\.json: slot"):  # "slots is not a list", "slot 0 is not"
        History.load(path, 1800)
