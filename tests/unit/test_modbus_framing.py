"""Pure framing code: RTU CRC/parsing, Solarman V5 frames, the 0x42 status word."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.simulator.servers.solarman import build_response, checksum, parse_request
from shared.modbus import LinkExceptionResponse, LinkFramingError, PassiveStatus
from shared.modbus.rtu import check_crc, frame, parse_response, request_length, response_length


def test_vendor_passive_examples_build_byte_for_byte() -> None:
    assert frame(1, 0x42, bytes.fromhex("0100 5555")) == bytes.fromhex("01 42 01 00 55 55 87 56")
    assert frame(1, 0x42, bytes.fromhex("0101 01F4")) == bytes.fromhex("01 42 01 01 01 F4 29 EE")
    assert frame(1, 0x42, bytes.fromhex("0102 03E8")) == bytes.fromhex("01 42 01 02 03 E8 D9 47")
    assert frame(0x88, 0x49, bytes.fromhex("2201 2202")) == bytes.fromhex("88 49 22 01 22 02 01 84")


def test_passive_status_word() -> None:
    status = PassiveStatus(0x0B00 | 0)  # charge enabled, discharge enabled, battery flat
    assert status.accepted and status.charge_enabled and status.discharge_enabled and status.battery_flat
    assert not status.battery_full
    busy = PassiveStatus.build(3, charge_enabled=False, battery_full=True)
    assert not busy.accepted and busy.result_text == "busy" and busy.battery_full and not busy.charge_enabled


@given(
    st.integers(1, 247),
    st.integers(1, 125).flatmap(lambda n: st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n)),
)
def test_read_response_round_trip(unit: int, registers: list[int]) -> None:
    payload = bytes([2 * len(registers)]) + b"".join(r.to_bytes(2, "big") for r in registers)
    adu = frame(unit, 3, payload)
    assert check_crc(adu) and response_length(adu[:3]) == len(adu)
    assert parse_response("t", adu, unit, 3) == payload


@given(st.binary(min_size=5, max_size=40), st.integers(0, 39), st.integers(1, 255))
def test_any_single_byte_corruption_is_a_framing_error(body: bytes, position: int, flip: int) -> None:
    adu = bytearray(frame(1, 3, bytes([len(body)]) + body))
    adu[position % len(adu)] ^= flip
    with pytest.raises(LinkFramingError, match="CRC mismatch"):
        parse_response("t", bytes(adu), 1, 3)


def test_exception_response_carries_the_code() -> None:
    with pytest.raises(LinkExceptionResponse) as caught:
        parse_response("tcp://x", frame(1, 0x83, b"\x02"), 1, 3)
    assert caught.value.code == 2 and caught.value.function == 3


def test_request_lengths() -> None:
    assert request_length(bytes.fromhex("01 42")) == 8
    assert request_length(bytes.fromhex("01 10 00 00 00 02")) is None
    assert request_length(bytes.fromhex("01 10 00 00 00 02 04")) == 13


def _v5_request(serial: int, rtu: bytes, seq: int = 0x1234) -> bytes:
    payload = b"\x02" + bytes(14) + rtu
    out = bytearray(b"\xa5" + struct.pack("<HHHI", len(payload), 0x4510, seq, serial) + payload + b"\x00\x15")
    out[-2] = checksum(out)
    return bytes(out)


@given(st.integers(1, 0xFFFFFFFF), st.binary(min_size=4, max_size=60), st.integers(0, 0xFFFF))
def test_v5_request_and_response_frames(serial: int, rtu: bytes, seq: int) -> None:
    request = _v5_request(serial, rtu, seq)
    assert parse_request(request, serial) == rtu
    response = build_response(request, serial, rtu)
    assert response[0] == 0xA5 and response[-1] == 0x15 and response[-2] == checksum(response)
    assert response[5:7] == request[5:7]  # the sequence is echoed
    assert struct.unpack("<H", response[3:5])[0] == 0x1510 and response[25:-2] == rtu
    assert struct.unpack("<H", response[1:3])[0] == len(response) - 13


def test_v5_request_errors_say_what_is_wrong() -> None:
    good = _v5_request(7, frame(1, 3, b"\x02\x00\x00"))
    with pytest.raises(ValueError, match="logger serial 7 is not ours"):
        parse_request(good, 8)
    bad = bytearray(good)
    bad[-2] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        parse_request(bytes(bad), 7)
