"""Pure parts of the bms-bridge and the BMS server: state building, plausibility, availability
rules, weak-module detection, the frame scanner, and the server's answers."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.bms_bridge.coordinator import BatteryCoordinator
from services.bms_bridge.health import HealthConfig, HealthMonitor, slope
from services.bms_bridge.state import ImplausibleReading, ModuleReading, build_state
from services.simulator.devices.pylontech import PylontechFaults, answer
from services.simulator.physics.battery import Battery, BatteryParams
from shared.messages import AvailabilityState, BatteryState, Event, ModuleState
from shared.pylontech import (
    AnalogResponse,
    ChargeDischarge,
    Cid2,
    Frame,
    ModuleAlarms,
    ModuleAnalog,
    Rtn,
    SerialNumber,
    SystemParameters,
    request,
)
from shared.pylontech.stream import FrameScanner

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def reading(
    address: int = 2,
    *,
    current_da: int = 100,
    cells: tuple[int, ...] = (3300, 3310, 3290),
    total_mah: int = 50_000,
    remaining_mah: int = 25_000,
    charge_da: int = 250,
    status: int = 0xC0,
    alarms: ModuleAlarms | None = None,
) -> ModuleReading:
    return ModuleReading(
        address,
        ModuleAnalog(cells, (2951, 2941), current_da, 49_500, remaining_mah, total_mah, 12),
        alarms or ModuleAlarms(cells=(0,) * len(cells), temps=(0, 0)),
        ChargeDischarge(address, 53_200, 44_500, charge_da, 250, status),
    )


def test_state_flips_pylontech_current_sign_and_adds_parallel_modules() -> None:
    # +10.0 A on the wire is charging; the project says charge is negative.
    state = build_state("stack", [reading(2, current_da=100), reading(3, current_da=50)], T0)
    assert [m.current_a for m in state.modules] == [-10.0, -5.0]
    assert state.current_a == -15.0
    assert state.power_w == pytest.approx(-15.0 * 49.5)
    assert state.soc_pct == 50.0
    assert state.cell_spread_mv == 20.0 and state.modules[0].cell_spread_mv == 20.0
    assert (state.cell_min_v, state.cell_max_v) == (3.29, 3.31)
    assert (state.temp_min_c, state.temp_max_c) == (21.0, 21.0)  # the BMS board (22.0) is not a cell
    assert state.limits.charge_current_a == 50.0 and state.limits.discharge_current_a == 50.0
    assert state.limits.charge_allowed and not state.limits.force_charge


def test_state_limits_take_the_most_conservative_module() -> None:
    state = build_state("stack", [reading(2), reading(3, status=0x40 | 0x20)], T0)
    assert state.limits.charge_allowed is False
    assert state.limits.force_charge is True


def test_state_alarms_are_prefixed_by_module() -> None:
    alarm = ModuleAlarms(cells=(0, 2, 0), temps=(0, 0))
    state = build_state("stack", [reading(2), reading(3, alarms=alarm)], T0)
    assert state.modules[1].alarms == ("cell2_voltage_high",)
    assert state.alarms == ("module1_cell2_voltage_high",)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (reading(total_mah=0), "full_ah=0 outside"),
        (reading(remaining_mah=60_000), "remaining_ah=60 outside"),
    ],
)
def test_a_stack_with_no_plausible_state_of_charge_is_refused_with_field_and_value(
    bad: ModuleReading, message: str
) -> None:
    with pytest.raises(ImplausibleReading, match=f"no module reported a plausible state of charge: .*{message}"):
        build_state("stack", [bad], T0)


@pytest.mark.parametrize(
    ("bad", "flag", "check"),
    [
        (reading(cells=(65000, 3300)), "module1.cell1_voltage_v", lambda s: s.modules[1].cells[0].voltage_v is None),
        (reading(cells=()), "module1.cell_count", lambda s: s.modules[1].cells == ()),
        (reading(charge_da=6000), "module1.charge_current_limit_a", lambda s: s.limits.charge_current_a == 25.0),
        (reading(current_da=9000), "module1.current_a", lambda s: s.current_a is None and s.power_w is None),
        (reading(total_mah=0), "module1.full_ah", lambda s: s.modules[1].soc_pct is None and s.soc_pct == 50.0),
    ],
)
def test_an_impossible_value_drops_that_field_only(bad: ModuleReading, flag: str, check) -> None:  # type: ignore[no-untyped-def]
    # Issue 15 item 2: one field no battery can have must not silence the module or the stack.
    state = build_state("stack", [reading(2), bad], T0)
    assert state.quality_flags == (flag,)
    assert check(state)
    assert state.modules[0].voltage_v == 49.5 and state.voltage_v == 49.5 and state.soc_pct == 50.0
    assert state.cell_max_v is not None and state.cell_max_v < 4.5


def test_current_limits_are_read_in_either_sign() -> None:
    # python-pylontech's README (github.com/Frankkkkk/python-pylontech, README.md) shows a real
    # pack's 0x47 with ``DischargeCurrentLimit = -10.0``; issue 15 saw a 0x92 limit of -37 A.
    negative = ModuleReading(
        2,
        reading().analog,
        reading().alarms,
        ChargeDischarge(2, 53_200, 44_500, 250, -370, 0xC0),
    )
    state = build_state("stack", [negative, reading(3, charge_da=-250)], T0)
    assert state.quality_flags == ()
    assert state.limits.discharge_current_a == 37.0 + 25.0
    assert state.limits.charge_current_a == 50.0


def test_coordinator_availability_rules() -> None:
    c = BatteryCoordinator("home", "stack", logging.getLogger("test"))
    first = c.polled([reading()], T0)
    assert [type(m).__name__ for _, m in first.publish] == ["BatteryState", "Availability"]
    assert c.polled([reading()], T0).publish[0][1].__class__ is BatteryState
    assert len(c.polled([reading()], T0).publish) == 1  # online is said once
    assert c.failed(TimeoutError("x"), T0).publish == []  # one failure is not offline yet
    second = c.failed(TimeoutError("x"), T0).publish
    assert len(second) == 1 and second[0][1].state is AvailabilityState.OFFLINE  # type: ignore[attr-defined]
    assert c.failed(TimeoutError("x"), T0).publish == []  # offline is said once
    back = c.polled([reading()], T0).publish
    assert [getattr(m, "state", None) for _, m in back] == [None, AvailabilityState.ONLINE]


def test_coordinator_counts_a_poll_with_nothing_plausible_as_failure_and_publishes_no_state() -> None:
    c = BatteryCoordinator("home", "stack", logging.getLogger("test"))
    c.polled([reading()], T0)
    first = c.polled([reading(total_mah=0)], T0).publish
    assert [m.code for _, m in first] == ["implausible_value"]  # type: ignore[attr-defined]
    out = c.polled([reading(total_mah=0)], T0)
    assert out.state is None
    assert [m.state for _, m in out.publish] == [AvailabilityState.OFFLINE]  # type: ignore[attr-defined]


def test_coordinator_publishes_the_rest_and_names_a_dropped_field_once() -> None:
    c = BatteryCoordinator("home", "stack", logging.getLogger("test"))
    c.polled([reading(2), reading(3)], T0)
    bad = ModuleReading(3, reading().analog, reading().alarms, ChargeDischarge(3, 53_200, 44_500, 250, 9990, 0xC0))
    out = c.polled([reading(2), bad], T0)
    assert out.state is not None and out.state.quality_flags == ("module1.discharge_current_limit_a",)
    assert out.state.limits.discharge_current_a == 25.0  # the dropped module adds nothing
    ((topic, event),) = [(t, m) for t, m in out.publish if isinstance(m, Event)]
    assert topic == "ongrid/home/bms/stack/event"
    assert event.code == "implausible_value"
    assert event.details["field"] == "discharge_current_limit_a" and event.details["value"] == 999.0
    assert "discharge_current_limit_a=999" in event.message
    # Still implausible: no new event; back to sense: one 'cleared'.
    again = c.polled([reading(2), bad], T0).publish
    assert not [m for _, m in again if isinstance(m, Event)]
    back = [m for _, m in c.polled([reading(2), reading(3)], T0).publish if isinstance(m, Event)]
    assert [e.code for e in back] == ["implausible_value_cleared"]


def test_coordinator_offline_when_never_read() -> None:
    c = BatteryCoordinator("home", "stack", logging.getLogger("test"))
    c.failed(OSError("port gone"), T0)
    ((topic, message),) = c.failed(OSError("port gone"), T0).publish
    assert topic == "ongrid/home/bms/stack/availability" and "port gone" in message.reason  # type: ignore[attr-defined]


# --- health -----------------------------------------------------------------------------------


def module(index: int, full_ah: float, spread_mv: float) -> ModuleState:
    return ModuleState(
        index=index, voltage_v=49.5, current_a=0.0, soc_pct=50.0, full_ah=full_ah, cell_spread_mv=spread_mv
    )


def test_weak_module_is_flagged_once_and_cleared() -> None:
    monitor = HealthMonitor(HealthConfig(min_samples=3, window=5))
    raised_all = []
    for k in range(3):
        raised, cleared = monitor.observe(
            T0 + timedelta(minutes=k), [module(0, 50, 8), module(1, 42.5, 9), module(2, 50, 7)]
        )
        raised_all += raised
        assert cleared == []
    assert [(f.module, f.code) for f in raised_all] == [(1, "weak_module_capacity")]
    assert raised_all[0].details["deficit_pct"] == pytest.approx(15.0)
    # Steady: nothing new is reported.
    assert monitor.observe(
        T0 + timedelta(minutes=4), [module(0, 50, 8), module(1, 42.5, 9), module(2, 50, 7)]
    ) == ([], [])
    cleared_all = []
    for k in range(5, 12):
        _, cleared = monitor.observe(
            T0 + timedelta(minutes=k), [module(0, 50, 8), module(1, 50, 9), module(2, 50, 7)]
        )
        cleared_all += cleared
    assert [(f.module, f.code) for f in cleared_all] == [(1, "weak_module_capacity")]


def test_one_noisy_poll_does_not_raise_a_finding() -> None:
    monitor = HealthMonitor(HealthConfig(min_samples=3, window=5))
    raised_all = []
    for k in range(5):
        spread = 80 if k == 3 else 8
        raised, _ = monitor.observe(
            T0 + timedelta(minutes=k), [module(0, 50, 8), module(1, 50, spread), module(2, 50, 7)]
        )
        raised_all += raised
    assert raised_all == []


def test_drifting_cells_and_fading_capacity_are_flagged() -> None:
    monitor = HealthMonitor(HealthConfig(min_samples=4, window=50))
    codes = set()
    for day in range(10):
        raised, _ = monitor.observe(
            T0 + timedelta(days=day),
            [module(0, 50, 8), module(1, 50 - 0.5 * day, 8 + 4 * day), module(2, 49.9, 8), module(3, 50, 9)],
        )
        codes |= {(f.module, f.code) for f in raised}
    # Its median capacity is still within 8 % of its siblings': fading, not yet weak.
    assert codes == {(1, "capacity_fading"), (1, "cell_spread_drift")}


def test_a_single_module_is_never_compared() -> None:
    monitor = HealthMonitor(HealthConfig(min_samples=1))
    assert monitor.observe(T0, [module(0, 10, 500)]) == ([], [])


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=20), st.floats(-10, 10), st.floats(-100, 100))
def test_slope_recovers_a_line(xs: list[float], a: float, b: float) -> None:
    if max(xs) - min(xs) < 1.0:
        return  # too little spread in x to pin a slope down numerically
    assert slope(xs, [a * x + b for x in xs]) == pytest.approx(a, rel=1e-6, abs=1e-6)


# --- the scanner that resynchronises on noise -------------------------------------------------


@given(
    noise=st.binary(max_size=80),
    frame=st.builds(Frame, adr=st.integers(0, 255), cid2=st.integers(0, 255), info=st.binary(max_size=40)),
    cuts=st.lists(st.integers(0, 300), max_size=6),
)
def test_scanner_finds_the_frame_after_any_noise_in_any_chunking(
    noise: bytes, frame: Frame, cuts: list[int]
) -> None:
    stream = noise + frame.encode()
    scanner = FrameScanner()
    found: list[bytes] = []
    start = 0
    for cut in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
        found += scanner.feed(stream[start:cut])
        start = max(start, cut)
    # Noise may produce candidates of its own, but the frame is always the last one, intact.
    assert found[-1] == frame.encode()


def test_scanner_drops_an_endless_line_without_growing() -> None:
    scanner = FrameScanner()
    for _ in range(20):
        assert scanner.feed(b"0" * 1000) == []
    assert len(scanner._buffer) <= 0x1000 + 32
    assert scanner.feed(b"~20024642E00202FD33\r") == [b"~20024642E00202FD33\r"]


# --- the server's answers (pure) --------------------------------------------------------------


@pytest.fixture
def pack():  # type: ignore[no-untyped-def]
    return Battery(BatteryParams(modules=3)).snapshot()


def test_server_answers_only_its_addresses(pack) -> None:  # type: ignore[no-untyped-def]
    assert answer(request(5, Cid2.ANALOG), pack) is None  # modules are 2, 3, 4
    reply = answer(request(4, Cid2.SERIAL_NUMBER), pack)
    assert reply is not None and reply.adr == 4 and reply.rtn == Rtn.NORMAL
    assert SerialNumber.decode(reply.info).serial == pack.modules[2].serial


def test_server_all_modules_and_errors(pack) -> None:  # type: ignore[no-untyped-def]
    reply = answer(request(2, Cid2.ANALOG, all_modules=True), pack)
    assert reply is not None
    assert len(AnalogResponse.decode(reply.info, all_modules=True).modules) == 3
    unknown = answer(Frame(adr=2, cid2=0x61), pack)
    assert unknown is not None and unknown.rtn == Rtn.CID2_INVALID and unknown.info == b""
    wrong = answer(Frame(adr=2, cid2=Cid2.ANALOG, info=b"\x09"), pack)
    assert wrong is not None and wrong.rtn == Rtn.ADR_ERROR


def test_server_sign_and_silent_module(pack) -> None:  # type: ignore[no-untyped-def]
    battery = Battery(BatteryParams(modules=2))
    battery.apply(1500.0, 60.0)  # discharging
    reply = answer(request(2, Cid2.ANALOG), battery.snapshot())
    assert reply is not None
    (m,) = AnalogResponse.decode(reply.info).modules
    assert m.current_a < 0  # Pylontech: discharge is negative on the wire
    assert (
        answer(request(3, Cid2.ANALOG), battery.snapshot(), faults=PylontechFaults(silent_modules={1}))
        is None
    )


def test_server_can_send_the_discharge_limit_negative(pack) -> None:  # type: ignore[no-untyped-def]
    # The vendor convention the bridge must accept (python-pylontech README: -10.0), on the wire.
    faults = PylontechFaults(negative_discharge_limit=True)
    reply = answer(request(2, Cid2.CHARGE_DISCHARGE), pack, faults=faults)
    assert reply is not None
    limits = ChargeDischarge.decode(reply.info)
    assert limits.discharge_current_da == -round(pack.modules[0].discharge_current_limit_a * 10) < 0
    assert limits.charge_current_da > 0
    params = answer(request(2, Cid2.SYSTEM_PARAMETERS), pack, faults=faults)
    assert params is not None and SystemParameters.decode(params.info).discharge_current_limit_a == -50.0
