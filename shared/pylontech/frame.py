"""Pylontech RS485 frames: ``~ VER ADR CID1 CID2 LENGTH INFO CHKSUM \\r``, every field ASCII hex.

LENGTH packs a 4-bit check (LCHKSUM) over the 12-bit count of INFO characters (LENID). CHKSUM is
the two's complement of the sum of the ASCII bytes between ``~`` and CHKSUM, modulo 65536. In a
response the CID2 position carries the return code RTN (0 = normal).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .errors import EncodeError, PylontechDecodeError

SOI = 0x7E  # '~'
EOI = 0x0D  # '\r'
VERSION = 0x20
CID1_BATTERY = 0x46
# '~' + 12 header chars + 4 checksum chars + '\r'
MIN_FRAME = 18
MAX_LENID = 0xFFF
_HEX = frozenset(b"0123456789ABCDEFabcdef")

# (name, first char offset in the raw frame, char count)
_HEADER = (("VER", 1, 2), ("ADR", 3, 2), ("CID1", 5, 2), ("CID2", 7, 2), ("LENGTH", 9, 4))


class Cid2(IntEnum):
    ANALOG = 0x42
    ALARM = 0x44
    SYSTEM_PARAMETERS = 0x47
    PROTOCOL_VERSION = 0x4F
    MANUFACTURER_INFO = 0x51
    CHARGE_DISCHARGE = 0x92
    SERIAL_NUMBER = 0x93


class Rtn(IntEnum):
    NORMAL = 0x00
    VER_ERROR = 0x01
    CHKSUM_ERROR = 0x02
    LCHKSUM_ERROR = 0x03
    CID2_INVALID = 0x04
    COMMAND_FORMAT_ERROR = 0x05
    INVALID_DATA = 0x06
    ADR_ERROR = 0x90
    COMMUNICATION_ERROR = 0x91


def rtn_meaning(rtn: int) -> str:
    try:
        return Rtn(rtn).name.lower()
    except ValueError:
        return "undefined return code"


def length_checksum(lenid: int) -> int:
    """LCHKSUM: two's complement (mod 16) of the sum of LENID's three nibbles."""
    total = (lenid & 0xF) + ((lenid >> 4) & 0xF) + ((lenid >> 8) & 0xF)
    return (-total) & 0xF


def length_field(lenid: int) -> int:
    if not 0 <= lenid <= MAX_LENID:
        raise EncodeError("LENID", lenid, f"must be 0..{MAX_LENID} INFO characters")
    return (length_checksum(lenid) << 12) | lenid


def frame_checksum(chars: bytes) -> int:
    """CHKSUM over the ASCII characters after ``~`` up to (not including) CHKSUM."""
    return (-sum(chars)) & 0xFFFF


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame. ``cid2`` is the command in a request and the return code (RTN) in a response."""

    adr: int
    cid2: int
    info: bytes = b""
    ver: int = VERSION
    cid1: int = CID1_BATTERY

    def encode(self) -> bytes:
        return encode_frame(self)

    @property
    def rtn(self) -> int:
        return self.cid2


def _byte_field(name: str, value: int) -> str:
    if not 0 <= value <= 0xFF:
        raise EncodeError(name, value, "must be one byte (0..255)")
    return f"{value:02X}"


def encode_frame(frame: Frame) -> bytes:
    info_hex = frame.info.hex().upper()
    body = (
        _byte_field("VER", frame.ver)
        + _byte_field("ADR", frame.adr)
        + _byte_field("CID1", frame.cid1)
        + _byte_field("CID2", frame.cid2)
        + f"{length_field(len(info_hex)):04X}"
        + info_hex
    ).encode("ascii")
    return b"~" + body + f"{frame_checksum(body):04X}".encode("ascii") + b"\r"


def _field_at(offset: int, info_end: int) -> str:
    for name, start, count in _HEADER:
        if start <= offset < start + count:
            return name
    return "INFO" if offset < info_end else "CHKSUM"


def decode_frame(raw: bytes) -> Frame:
    """Decode one complete frame, ``~`` to ``\\r`` inclusive. Raises ``PylontechDecodeError``."""
    raw = bytes(raw)
    if len(raw) < MIN_FRAME:
        raise PylontechDecodeError("frame", 0, raw, f"{len(raw)} bytes is shorter than the minimum {MIN_FRAME}")
    if raw[0] != SOI:
        raise PylontechDecodeError("SOI", 0, raw, f"expected '~', got {raw[:1]!r}")
    if raw[-1] != EOI:
        raise PylontechDecodeError("EOI", len(raw) - 1, raw, f"expected '\\r', got {raw[-1:]!r}")
    info_end = len(raw) - 5
    for offset in range(1, len(raw) - 1):
        if raw[offset] not in _HEX:
            field = _field_at(offset, info_end)
            raise PylontechDecodeError(field, offset, raw, f"{raw[offset : offset + 1]!r} is not a hex digit")
    body = raw[1:info_end]
    stated = int(raw[info_end:-1], 16)
    computed = frame_checksum(body)
    if stated != computed:
        raise PylontechDecodeError("CHKSUM", info_end, raw, f"frame says {stated:04X}, content sums to {computed:04X}")
    length = int(raw[9:13], 16)
    lenid, lchksum = length & 0xFFF, length >> 12
    if lchksum != length_checksum(lenid):
        expected = length_checksum(lenid)
        problem = f"LCHKSUM {lchksum:X} does not match LENID {lenid} (expected {expected:X})"
        raise PylontechDecodeError("LENGTH", 9, raw, problem)
    info_chars = raw[13:info_end]
    if lenid != len(info_chars):
        held = len(info_chars)
        raise PylontechDecodeError("LENGTH", 9, raw, f"LENID says {lenid} INFO characters, frame holds {held}")
    if lenid % 2:
        raise PylontechDecodeError("LENGTH", 9, raw, f"LENID {lenid} is odd; INFO must be whole bytes")
    return Frame(
        ver=int(raw[1:3], 16),
        adr=int(raw[3:5], 16),
        cid1=int(raw[5:7], 16),
        cid2=int(raw[7:9], 16),
        info=bytes.fromhex(info_chars.decode("ascii")),
    )
