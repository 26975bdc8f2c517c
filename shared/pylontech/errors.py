"""The one error family of the Pylontech codec and transport.

A decoding error always says which field failed, where in the frame it sits and what the raw
bytes were, so that a line capture in a bug report is enough to reproduce it.
"""

from __future__ import annotations


class PylontechError(Exception):
    """Base of every error raised by ``shared.pylontech``."""


class PylontechDecodeError(PylontechError):
    """A frame or payload that does not follow the protocol.

    ``offset`` counts from the start of what was being decoded: the raw frame (``~`` at 0) for
    frame errors, the hex-decoded INFO bytes for payload errors.
    """

    def __init__(self, field: str, offset: int, raw: bytes, problem: str) -> None:
        self.field = field
        self.offset = offset
        self.raw = bytes(raw)
        self.problem = problem
        shown = self.raw if len(self.raw) <= 120 else self.raw[:120] + b"..."
        super().__init__(f"{field} at offset {offset}: {problem} (raw {shown!r})")


class EncodeError(PylontechError):
    """A value that cannot be put on the wire (out of its field's range, wrong length)."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}={value!r}: {problem}")


class DeviceError(PylontechError):
    """The BMS answered, but with a non-zero return code (RTN)."""

    def __init__(self, adr: int, cid2: int, rtn: int, meaning: str) -> None:
        self.adr = adr
        self.cid2 = cid2
        self.rtn = rtn
        super().__init__(f"BMS at address {adr} refused command 0x{cid2:02X}: RTN 0x{rtn:02X} ({meaning})")


class TransportError(PylontechError):
    """The link failed: no answer in time, port gone, connection refused or dropped."""
