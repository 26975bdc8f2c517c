"""Pylontech codec: golden frames from the notes, hand-assembled payloads, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.pylontech import (
    AlarmResponse,
    AnalogResponse,
    ChargeDischarge,
    Cid2,
    EncodeError,
    Frame,
    ManufacturerInfo,
    ModuleAlarms,
    ModuleAnalog,
    PylontechDecodeError,
    PylontechError,
    SerialNumber,
    SystemParameters,
    command_byte,
    decode_frame,
    encode_frame,
    request,
)
from shared.pylontech.frame import frame_checksum, length_field

# Verified frames (shared/protocols/pylontech_protocols.md).
GOLDEN_FRAMES = {
    b"~20014682C0048520FCC3\r": Frame(adr=0x01, cid2=0x82, info=bytes.fromhex("8520")),
    b"~20014642E00201FD35\r": Frame(adr=0x01, cid2=0x42, info=b"\x01"),
    b"~2002464FC0048520FCB2\r": Frame(adr=0x02, cid2=0x4F, info=bytes.fromhex("8520")),
}


@pytest.mark.parametrize(("raw", "frame"), GOLDEN_FRAMES.items())
def test_golden_frames_decode_and_encode(raw: bytes, frame: Frame) -> None:
    assert decode_frame(raw) == frame
    assert encode_frame(frame) == raw


@pytest.mark.parametrize(
    ("lenid", "field"), [(0, 0x0000), (2, 0xE002), (4, 0xC004), (18, 0xD012), (50, 0xB032)]
)
def test_length_field_examples(lenid: int, field: int) -> None:
    assert length_field(lenid) == field


def test_requests_match_third_party_encoders() -> None:
    # Bytes produced by python-pylontech 0.3.3 Pylontech._encode_cmd for the same requests.
    assert request(2, Cid2.ANALOG).encode() == b"~20024642E00202FD33\r"
    assert request(2, Cid2.ANALOG, all_modules=True).encode() == b"~20024642E002FFFD09\r"
    assert request(2, Cid2.PROTOCOL_VERSION).encode() == b"~2002464F0000FD98\r"
    with pytest.raises(EncodeError, match="one module only"):
        request(2, Cid2.CHARGE_DISCHARGE, all_modules=True)


def test_request_with_pylontech_013_second_info_byte_is_read_by_first_byte() -> None:
    # pylontech 0.1.3 sends INFO "0301" (ADR, module number + 1), lower-case in its FF form.
    body = b"20034642C0040301"
    raw = b"~" + body + f"{frame_checksum(body):04X}".encode() + b"\r"
    frame = decode_frame(raw)
    assert (frame.adr, frame.cid2, command_byte(frame)) == (3, 0x42, 3)
    lower = b"20024642C00402ff"
    frame = decode_frame(b"~" + lower + f"{frame_checksum(lower):04X}".encode() + b"\r")
    assert frame.info == b"\x02\xff"


ANALOG_INFO_HEX = (
    "00"  # INFOFLAG
    "02"  # command: module address 2
    "0F"
    + "0CE4" * 14
    + "0D48"  # 15 cells: 3.300 V x14, 3.400 V
    + "05"
    + "0BA5"
    "0BAF"
    "0B9B"
    "0AAB"
    "0BA5"  # 5 temps: 25.0, 26.0, 24.0, 0.0, 25.0 degC
    + "FFCC"  # current -5.2 A (discharging, BMS convention: charge +)
    + "C15C"  # 49.500 V
    + "61A8"  # remaining 25.000 Ah
    + "02"  # UDI
    + "C350"  # total 50.000 Ah
    + "007B"  # 123 cycles
)


def test_analog_golden_payload() -> None:
    response = AnalogResponse.decode(bytes.fromhex(ANALOG_INFO_HEX))
    (module,) = response.modules
    assert response.command == 2
    assert module.cell_voltages_v == (3.3,) * 14 + (3.4,)
    assert module.temps_c == (25.0, 26.0, 24.0, 0.0, 25.0)
    assert module.current_a == pytest.approx(-5.2)
    assert module.voltage_v == 49.5
    assert (module.remaining_ah, module.total_ah, module.cycles) == (25.0, 50.0, 123)
    assert response.encode().hex().upper() == ANALOG_INFO_HEX


def test_analog_udi4_uses_u24_capacities() -> None:
    info = bytes.fromhex("0002010CE4010BA50010C15CFFFF04FFFF00010186A0030D40")
    (module,) = AnalogResponse.decode(info).modules
    assert (module.remaining_ah, module.total_ah, module.udi, module.current_a) == (100.0, 200.0, 4, 1.6)
    assert AnalogResponse(modules=(module,), command=2).encode() == info


def test_analog_bad_udi_names_field_and_offset() -> None:
    info = bytearray.fromhex(ANALOG_INFO_HEX)
    udi_offset = 2 + 1 + 30 + 1 + 10 + 2 + 2 + 2
    info[udi_offset] = 3
    with pytest.raises(PylontechDecodeError) as caught:
        AnalogResponse.decode(bytes(info))
    assert caught.value.field == "analog.module[0].udi"
    assert caught.value.offset == udi_offset
    assert "3 is not 2 or 4" in str(caught.value)


def test_truncated_payload_names_field() -> None:
    with pytest.raises(PylontechDecodeError, match=r"analog.module\[0\].cycles at offset 53"):
        AnalogResponse.decode(bytes.fromhex(ANALOG_INFO_HEX)[:-1])


def test_alarm_names() -> None:
    alarms = ModuleAlarms(
        cells=(0, 2, 0, 1), temps=(0, 0xF0), charge_current=2, status=(0b1000_0001, 0, 0, 0b100, 0b1)
    )
    assert alarms.names() == (
        "cell2_voltage_high",
        "cell4_voltage_low",
        "temp2_fault",
        "charge_current_high",
        "module_under_voltage",
        "module_over_voltage",
        "cell3_failure",
        "cell9_failure",
    )
    info = AlarmResponse(modules=(alarms,), command=3).encode()
    assert info.hex().upper() == "000304000200010200F00200008100000401"


def test_charge_discharge_golden() -> None:
    info = bytes.fromhex("02D002AFC8019001F4C0")
    cd = ChargeDischarge.decode(info)
    assert (cd.charge_voltage_mv, cd.discharge_voltage_mv) == (53250, 45000)
    assert (cd.charge_current_da, cd.discharge_current_da) == (400, 500)
    assert cd.charge_enabled and cd.discharge_enabled and not cd.force_charge
    assert cd.encode() == info


def test_system_parameters_is_25_bytes_like_pylontech_013_expects() -> None:
    params = SystemParameters(3650, 3000, 2700, 3331, 2731, 500, 54000, 46000, 44500, 3331, 2531, -500)
    info = params.encode()
    assert len(info) * 2 == 50
    assert SystemParameters.decode(info) == params
    assert params.charge_temp_range_c == (0.0, 60.0)
    assert params.discharge_current_limit_a == -50.0


def test_manufacturer_and_serial() -> None:
    info = ManufacturerInfo("US2000C", (1, 6), "PYLON").encode()
    assert len(info) == 32
    assert ManufacturerInfo.decode(info) == ManufacturerInfo("US2000C", (1, 6), "PYLON")
    sn = SerialNumber(2, "PPTAH0123456789A")
    assert SerialNumber.decode(sn.encode()) == sn
    with pytest.raises(PylontechDecodeError, match=r"serial_number\.serial at offset 1: is not ASCII"):
        SerialNumber.decode(b"\x02" + b"\xff" * 16)


@pytest.mark.parametrize(
    ("raw", "field", "offset"),
    [
        (b"~2002\r", "frame", 0),
        (b"!20024642E00202FD33\r", "SOI", 0),
        (b"~20024642E00202FD33\n", "EOI", 19),
        (b"~20024642E00202FD34\r", "CHKSUM", 15),
        (b"~20G24642E00202FD33\r", "ADR", 3),
        (b"~20024642E00Z02FD33\r", "LENGTH", 12),
    ],
)
def test_frame_errors_name_field_and_offset(raw: bytes, field: str, offset: int) -> None:
    with pytest.raises(PylontechDecodeError) as caught:
        decode_frame(raw)
    assert (caught.value.field, caught.value.offset, caught.value.raw) == (field, offset, raw)


def test_bad_lchksum_is_a_length_error() -> None:
    body = b"20024642F00202"
    raw = b"~" + body + f"{frame_checksum(body):04X}".encode() + b"\r"
    with pytest.raises(PylontechDecodeError, match="LENGTH at offset 9: LCHKSUM F does not match LENID 2"):
        decode_frame(raw)


def test_encode_refuses_out_of_range_values() -> None:
    module = ModuleAnalog((70000,), (2981,), 0, 48000, 1, 2, 3)
    with pytest.raises(EncodeError, match=r"analog.module\[0\].cell\[0\]=70000: does not fit U16"):
        AnalogResponse(modules=(module,), command=2).encode()
    with pytest.raises(EncodeError, match="ADR=256"):
        Frame(adr=256, cid2=0x42).encode()


# --- properties -------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
s16 = st.integers(-0x8000, 0x7FFF)
u24 = st.integers(0, 0xFFFFFF)


@st.composite
def module_analog(draw: st.DrawFn) -> ModuleAnalog:
    udi = draw(st.sampled_from([2, 4]))
    cap = u16.filter(lambda v: v != 0xFFFF) if udi == 2 else u24
    return ModuleAnalog(
        cell_mv=tuple(draw(st.lists(u16, max_size=16))),
        temps_dk=tuple(draw(st.lists(s16, max_size=8))),
        current_da=draw(s16),
        voltage_mv=draw(u16),
        remaining_mah=draw(cap),
        total_mah=draw(cap),
        cycles=draw(u16),
        udi=udi,
    )


module_alarms = st.builds(
    ModuleAlarms,
    cells=st.lists(u8, max_size=16).map(tuple),
    temps=st.lists(u8, max_size=8).map(tuple),
    charge_current=u8,
    module_voltage=u8,
    discharge_current=u8,
    status=st.tuples(u8, u8, u8, u8, u8),
)
printable = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
text = st.text(printable, max_size=10)


@given(adr=u8, cid2=u8, info=st.binary(max_size=0x7FF), ver=u8)
def test_frame_round_trip(adr: int, cid2: int, info: bytes, ver: int) -> None:
    frame = Frame(adr=adr, cid2=cid2, info=info, ver=ver)
    assert decode_frame(encode_frame(frame)) == frame


@given(frame=st.builds(Frame, adr=u8, cid2=u8, info=st.binary(max_size=64)), data=st.data())
def test_any_single_byte_corruption_is_detected(frame: Frame, data: st.DataObject) -> None:
    raw = bytearray(encode_frame(frame))
    index = data.draw(st.integers(0, len(raw) - 1))
    # A hex digit in the other case ('a' for 'A') is the same value, not a corruption.
    same = {raw[index], ord(chr(raw[index]).swapcase())}
    raw[index] = data.draw(u8.filter(lambda b: b not in same))
    with pytest.raises(PylontechDecodeError):
        decode_frame(bytes(raw))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_codec_errors(raw: bytes) -> None:
    for decode in (
        decode_frame,
        AnalogResponse.decode,
        lambda b: AnalogResponse.decode(b, all_modules=True),
        AlarmResponse.decode,
        lambda b: AlarmResponse.decode(b, all_modules=True),
        SystemParameters.decode,
        ChargeDischarge.decode,
        ManufacturerInfo.decode,
        SerialNumber.decode,
    ):
        try:
            decode(raw)
        except PylontechDecodeError:
            pass


@given(st.binary(max_size=60).map(lambda b: b"~" + b.hex().encode() + b"\r"))
def test_hex_shaped_noise_raises_only_codec_errors(raw: bytes) -> None:
    try:
        decode_frame(raw)
    except PylontechError:
        pass


@given(modules=st.lists(module_analog(), min_size=1, max_size=4), flag=u8)
def test_analog_round_trip(modules: list[ModuleAnalog], flag: int) -> None:
    many = AnalogResponse(modules=tuple(modules), command=len(modules), all_modules=True, info_flag=flag)
    assert AnalogResponse.decode(many.encode(), all_modules=True) == many
    one = AnalogResponse(modules=(modules[0],), command=2 + flag % 14, info_flag=flag)
    assert AnalogResponse.decode(one.encode()) == one


@given(modules=st.lists(module_alarms, min_size=1, max_size=4))
def test_alarm_round_trip(modules: list[ModuleAlarms]) -> None:
    many = AlarmResponse(modules=tuple(modules), command=len(modules), all_modules=True)
    assert AlarmResponse.decode(many.encode(), all_modules=True) == many


@given(
    params=st.builds(SystemParameters, *([u16] * 3 + [s16] * 3 + [u16] * 3 + [s16] * 3), info_flag=u8),
    cd=st.builds(ChargeDischarge, u8, u16, u16, s16, s16, u8),
    info=st.builds(ManufacturerInfo, text, st.tuples(u8, u8), text),
    sn=st.builds(SerialNumber, u8, st.text(printable, max_size=16)),
)
def test_fixed_payload_round_trips(
    params: SystemParameters, cd: ChargeDischarge, info: ManufacturerInfo, sn: SerialNumber
) -> None:
    assert SystemParameters.decode(params.encode()) == params
    assert ChargeDischarge.decode(cd.encode()) == cd
    assert ManufacturerInfo.decode(info.encode()) == info
    assert SerialNumber.decode(sn.encode()) == sn
