"""Modbus RTU framing helpers: CRC, request building, response length and parsing.

Used where a whole RTU frame travels inside something else (Solarman V5) and pymodbus's framer
is not in the path.
"""

from __future__ import annotations

from .errors import LinkExceptionResponse, LinkFramingError


def crc16(data: bytes) -> int:
    """Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def frame(unit: int, function: int, payload: bytes) -> bytes:
    """A complete RTU ADU: unit, function, payload, CRC (low byte first)."""
    body = bytes((unit, function)) + payload
    return body + crc16(body).to_bytes(2, "little")


def check_crc(adu: bytes) -> bool:
    return len(adu) >= 4 and crc16(adu[:-2]) == int.from_bytes(adu[-2:], "little")


# Response shapes by function code: byte-count style or fixed length (unit..CRC).
_BYTE_COUNT = {1, 2, 3, 4, 0x17, 0x42}
_FIXED = {5: 8, 6: 8, 15: 8, 16: 8, 0x49: 8}


def response_length(adu_start: bytes) -> int | None:
    """Length of the response ADU that starts with these bytes, or None until more bytes arrive."""
    if len(adu_start) < 3:
        return None
    function = adu_start[1]
    if function & 0x80:
        return 5
    if function in _BYTE_COUNT:
        return 5 + adu_start[2]
    if function in _FIXED:
        return _FIXED[function]
    raise LinkFramingError("rtu", f"cannot tell the length of a response to function 0x{function:02X}")


def request_length(adu_start: bytes) -> int | None:
    """Length of the request ADU that starts with these bytes (server side of a gateway)."""
    if len(adu_start) < 2:
        return None
    function = adu_start[1]
    if function in (1, 2, 3, 4, 5, 6, 0x42, 0x49, 0x41):
        return 10 if function == 0x41 else 8
    if function in (15, 16):
        return None if len(adu_start) < 7 else 9 + adu_start[6]
    raise LinkFramingError("rtu", f"cannot tell the length of a request with function 0x{function:02X}")


def parse_response(endpoint: str, adu: bytes, unit: int, function: int) -> bytes:
    """The response PDU data (after the function code) or the matching LinkError."""
    if len(adu) < 5:
        raise LinkFramingError(endpoint, f"response of {len(adu)} bytes is too short: {adu.hex(' ')}")
    if not check_crc(adu):
        raise LinkFramingError(endpoint, f"CRC mismatch in response {adu.hex(' ')}")
    if adu[0] != unit:
        raise LinkFramingError(endpoint, f"response from unit {adu[0]}, expected {unit}")
    if adu[1] == function | 0x80:
        raise LinkExceptionResponse(endpoint, function, adu[2])
    if adu[1] != function:
        raise LinkFramingError(endpoint, f"response function 0x{adu[1]:02X}, expected 0x{function:02X}")
    expected = response_length(adu)
    if expected is not None and expected != len(adu):
        raise LinkFramingError(endpoint, f"response is {len(adu)} bytes, its header says {expected}")
    return adu[2:-2]
