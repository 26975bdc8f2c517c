"""Pylontech against frames this project did not write: real packs' answers captured by
python-pylontech (github.com/Frankkkkk/python-pylontech, tests/test_basic.py at commit
5d91f6d7fe3a42853eacbf9d79fd03a70055ccc4), with the values that project decodes from them
(its assertions, quoted below). Issue 15 item 1.

Each capture is decoded by our codec and by the bridge's state building, and the simulator's
answers for a pack holding the same values are compared with the captures byte for byte (all
but INFOFLAG: real packs send 0x10/0x11, the simulator 0x00; the bridge ignores it).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.bms_bridge.state import ModuleReading, build_state
from services.simulator.devices.pylontech import PylontechFaults, answer
from services.simulator.physics.battery import ModuleView, PackView
from shared.pylontech import (
    AnalogResponse,
    ChargeDischarge,
    Cid2,
    ModuleAlarms,
    ModuleAnalog,
    decode_frame,
    request,
)

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

# test_us2000_3modules_info_parsing_1: 0x42 FF of three US2000 (UDI 2).
US2000_X3_ANALOG = (
    b"~20024600914211030F0CE70CE80CE60CE70CE80CE80CE80CE60CE50CE60CE80CE70CEA0CE50CE6050B910B870B870B8"
    b"70B87FFE6C18982DC02C350001F0F0CE20CE60CE60CE10CE50CE70CE60CE30CE20CE50CE30CE90CE70CE90CE9050B910"
    b"B870B870B870B87FFE7C17082DC02C350001F0F0CE20CE50CE50CE20CE30CE30CE40CE50CE60CE60CE30CE40CE40CE60"
    b"CE6050B910B7D0B7D0B7D0B7DFFE5C16082DC02C350001FB476\r"
)
# test_mixed_us3000_us2000_status_info_parsing_1: a US3000 master and a US2000 (both UDI 4).
US3000_US2000_ANALOG = (
    b"~2002460010F011020F0CCD0CCE0CCC0CCE0CCB0CCC0CCD0CCC0CCD0CCB0CCC0CCD0CCD0CCE0CCC050BE10BCD0BCD0BD"
    b"70BCDFFC3BFFDFFFF04FFFF0234007F300121100F0CCA0CCA0CCB0CCC0CCA0CCC0CCB0CCB0CCB0CCB0CCB0CCA0CCC0CC"
    b"C0CCB050BEB0BCD0BCD0BCD0BC3FFD1BFE5FFFF04FFFF0292005FB400C350C4A7\r"
)
# test_up2500_1module_status_info_parsing_1: 0x42 of one UP2500 (24 V, 8 cells, UDI 4).
UP2500_ANALOG = (
    b"~20024600D05E1002080D020D020D020D030D000D010D010D03050B7D0B690B690B690B73FFFA680EFFFF04FFFF00000174E401B198E906\r"
)
# test_up2500_management_info: 0x92 of the same pack model; DischargeCurrentLimit == -55.5.
UP2500_MANAGEMENT = b"~20024600B014026EF05AA0022BFDD5C0F915\r"

# python-pylontech's decoded values (its sign: current charge +), per module:
# (current A, voltage V, remaining Ah, total Ah, cycles, BMS temp degC, cell temps degC, cells)
EXPECTED = {
    "us2000x3": [
        (-2.6, 49.545, 33.5, 50.0, 31, 23.0, (22.0, 22.0, 22.0, 22.0), 15),
        (-2.5, 49.52, 33.5, 50.0, 31, 23.0, (22.0, 22.0, 22.0, 22.0), 15),
        (-2.7, 49.504, 33.5, 50.0, 31, 23.0, (21.0, 21.0, 21.0, 21.0), 15),
    ],
    "us3000+us2000": [
        (-6.1, 49.149, 32.56, 74.0, 564, 31.0, (29.0, 29.0, 30.0, 29.0), 15),
        (-4.7, 49.125, 24.5, 50.0, 658, 32.0, (29.0, 29.0, 29.0, 28.0), 15),
    ],
}
# First module's cells as python-pylontech reads them (mV).
US2000_MODULE0_CELLS_V = (
    3.303,
    3.304,
    3.302,
    3.303,
    3.304,
    3.304,
    3.304,
    3.302,
    3.301,
    3.302,
    3.304,
    3.303,
    3.306,
    3.301,
    3.302,
)
# Its stack totals: TotalPower (charge +) and StateOfCharge.
STACK_TOTALS = {"us2000x3": (-386.2778, 0.67), "us3000+us2000": (-530.6964, 0.460161)}
CAPTURES = {"us2000x3": US2000_X3_ANALOG, "us3000+us2000": US3000_US2000_ANALOG}


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_captured_analog_frames_decode_as_python_pylontech_reads_them(name: str) -> None:
    frame = decode_frame(CAPTURES[name])
    modules = AnalogResponse.decode(frame.info, all_modules=True).modules
    assert len(modules) == len(EXPECTED[name])
    for got, (current, volts, remaining, total, cycles, bms_t, cell_t, cells) in zip(
        modules, EXPECTED[name], strict=True
    ):
        assert got.current_a == pytest.approx(current)
        assert got.voltage_v == pytest.approx(volts)
        assert got.remaining_ah == pytest.approx(remaining)
        assert got.total_ah == pytest.approx(total)
        assert got.cycles == cycles
        assert got.temps_c[0] == pytest.approx(bms_t)
        assert got.temps_c[1:] == pytest.approx(cell_t)
        assert len(got.cell_mv) == cells
    if name == "us2000x3":
        assert modules[0].cell_voltages_v == pytest.approx(US2000_MODULE0_CELLS_V)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (US2000_X3_ANALOG, "all"),
        (US3000_US2000_ANALOG, "all"),
        (UP2500_ANALOG, "one"),
        (UP2500_MANAGEMENT, "0x92"),
    ],
)
def test_our_encoder_reproduces_every_capture_byte_for_byte(raw: bytes, kind: str) -> None:
    # LENGTH's checksum nibble, CHKSUM, UDI 2 and UDI 4 layouts: as the real packs wrote them.
    frame = decode_frame(raw)
    if kind == "0x92":
        payload = ChargeDischarge.decode(frame.info).encode()
    else:
        payload = AnalogResponse.decode(frame.info, all_modules=kind == "all").encode()
    assert payload == frame.info
    assert frame.encode() == raw


def _readings(name: str) -> list[ModuleReading]:
    modules = AnalogResponse.decode(decode_frame(CAPTURES[name]).info, all_modules=True).modules
    limits = ChargeDischarge.decode(decode_frame(UP2500_MANAGEMENT).info)
    no_alarms = ModuleAlarms(cells=(0,) * 15, temps=(0,) * 5)
    return [ModuleReading(2 + i, m, no_alarms, limits) for i, m in enumerate(modules)]


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_the_bridge_reads_captured_stacks_as_python_pylontech_does(name: str) -> None:
    state = build_state("stack", _readings(name), T0)
    total_power_charge_plus, soc = STACK_TOTALS[name]
    # Our sign is discharge +: the same magnitude, the other sign.
    assert state.power_w == pytest.approx(-total_power_charge_plus, abs=0.1)
    assert state.soc_pct == pytest.approx(100 * soc, abs=0.01)
    assert [m.current_a for m in state.modules] == pytest.approx([-e[0] for e in EXPECTED[name]])
    assert state.quality_flags == ()


def test_a_real_packs_negative_discharge_limit_is_read_as_its_magnitude() -> None:
    # python-pylontech: ChargeCurrentLimit == 55.5, DischargeCurrentLimit == -55.5,
    # ChargeVoltageLimit == 28.4, DischargeVoltageLimit == 23.2, ChargeEnable, DischargeEnable.
    limits = ChargeDischarge.decode(decode_frame(UP2500_MANAGEMENT).info)
    assert (limits.charge_current_da, limits.discharge_current_da) == (555, -555)
    assert limits.charge_enabled and limits.discharge_enabled and not limits.force_charge
    (analog,) = AnalogResponse.decode(decode_frame(UP2500_ANALOG).info).modules
    # python-pylontech: Voltage 26.638, Current -0.6, RemainingCapacity 95.460, TotalCapacity 111.
    assert (analog.voltage_v, analog.current_a, analog.remaining_ah, analog.total_ah) == pytest.approx(
        (26.638, -0.6, 95.46, 111.0)
    )
    state = build_state("up2500", [ModuleReading(2, analog, ModuleAlarms(cells=(0,) * 8, temps=(0,) * 5), limits)], T0)
    assert state.quality_flags == ()
    assert (state.limits.charge_current_a, state.limits.discharge_current_a) == (55.5, 55.5)
    assert (state.limits.charge_voltage_v, state.limits.discharge_voltage_v) == (28.4, 23.2)
    assert state.soc_pct == pytest.approx(86.0, abs=0.01)  # python-pylontech: StateOfCharge 0.86
    assert state.current_a == pytest.approx(0.6)  # discharging 0.6 A, discharge +


# --- the simulator against the same captures ---------------------------------------------------


def _view(index: int, m: ModuleAnalog, limits: ChargeDischarge | None = None) -> ModuleView:
    """A simulated module holding exactly what the captured module reported."""
    lim = limits or ChargeDischarge(0, 53_200, 44_500, 250, 250)
    return ModuleView(
        index=index,
        model="US2000",
        serial=f"CAPTURE{index}",
        voltage_v=m.voltage_v,
        current_a=-m.current_a,  # the view is discharge +
        soc_pct=100 * m.remaining_ah / m.total_ah,
        remaining_ah=m.remaining_ah,
        full_ah=m.total_ah,
        design_ah=m.total_ah,
        cycles=m.cycles,
        cell_voltages_v=m.cell_voltages_v,
        cell_temps_c=m.temps_c[1:],
        bms_temp_c=m.temps_c[0],
        charge_current_limit_a=abs(lim.charge_current_da) / 10,
        discharge_current_limit_a=abs(lim.discharge_current_da) / 10,
        charge_voltage_limit_v=lim.charge_voltage_mv / 1000,
        discharge_voltage_limit_v=lim.discharge_voltage_mv / 1000,
        charge_enabled=lim.charge_enabled,
        discharge_enabled=lim.discharge_enabled,
        charge_immediately=False,
        full_charge_request=False,
        soh_pct=100.0,
    )


def _pack(views: list[ModuleView]) -> PackView:
    return PackView(
        voltage_v=views[0].voltage_v,
        current_a=sum(v.current_a for v in views),
        power_w=0.0,
        soc_pct=50.0,
        energy_wh=0.0,
        full_wh=0.0,
        temp_c=20.0,
        cycles=0,
        charge_current_limit_a=0.0,
        discharge_current_limit_a=0.0,
        modules=tuple(views),
    )


def test_the_simulator_answers_0x42_like_the_captured_us2000_stack() -> None:
    captured = decode_frame(US2000_X3_ANALOG)
    modules = AnalogResponse.decode(captured.info, all_modules=True).modules
    pack = _pack([_view(i, m) for i, m in enumerate(modules)])
    reply = answer(request(2, Cid2.ANALOG, all_modules=True), pack)
    assert reply is not None
    assert reply.info[1:] == captured.info[1:]  # everything after INFOFLAG, byte for byte


def test_the_simulator_answers_0x42_and_0x92_like_the_captured_up2500() -> None:
    limits = ChargeDischarge.decode(decode_frame(UP2500_MANAGEMENT).info)
    captured = decode_frame(UP2500_ANALOG)
    (module,) = AnalogResponse.decode(captured.info).modules
    pack = _pack([_view(0, module, limits)])
    reply = answer(request(2, Cid2.ANALOG), pack)
    assert reply is not None and reply.info[1:] == captured.info[1:]  # UDI 4 for 111 Ah, as the pack
    # A pack that sends its discharge limit negative: the simulator's switch gives the same frame.
    faults = PylontechFaults(negative_discharge_limit=True)
    management = answer(request(2, Cid2.CHARGE_DISCHARGE), pack, faults=faults)
    assert management is not None and management.encode() == UP2500_MANAGEMENT
