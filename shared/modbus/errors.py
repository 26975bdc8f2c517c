"""One error family for every transport, so a bridge handles failures without knowing the library."""

from __future__ import annotations

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class LinkError(Exception):
    """A Modbus exchange failed. ``endpoint`` names where (``tcp://host:port``, ``rtu:/dev/ttyUSB0``)."""

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(f"{endpoint}: {message}")
        self.endpoint = endpoint


class LinkTimeout(LinkError):
    """No answer in time (device off, wrong unit id, wrong baud rate)."""


class LinkFramingError(LinkError):
    """Bytes arrived but were not a valid frame: CRC mismatch, wrong length, garbage on the line."""


class LinkConnectionError(LinkError):
    """The endpoint cannot be reached: connection refused, serial port missing, socket dropped."""


class LinkExceptionResponse(LinkError):
    """The device answered with a Modbus exception code."""

    def __init__(self, endpoint: str, function: int, code: int, what: str = "") -> None:
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        detail = f" ({what})" if what else ""
        super().__init__(endpoint, f"function 0x{function:02X}{detail} answered exception {code}: {name}")
        self.function = function
        self.code = code
