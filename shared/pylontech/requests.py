"""Requests a master sends, and how a battery reads them.

For 0x42, 0x44, 0x92 and 0x93 the INFO carries a command byte: the module's address, or ``FF``
for every module (0x42/0x44 only). pylontech 0.1.3 sends a second byte (module number + 1)
that real batteries ignore, so a reader takes the first byte and ignores the rest.
"""

from __future__ import annotations

from .errors import EncodeError
from .frame import Cid2, Frame
from .payloads import ALL_MODULES

_TAKES_COMMAND = frozenset({Cid2.ANALOG, Cid2.ALARM, Cid2.CHARGE_DISCHARGE, Cid2.SERIAL_NUMBER})
_TAKES_ALL = frozenset({Cid2.ANALOG, Cid2.ALARM})


def request(adr: int, cid2: Cid2, *, all_modules: bool = False) -> Frame:
    """The request frame for one command to the module at ``adr`` (or to all, where allowed)."""
    if all_modules and cid2 not in _TAKES_ALL:
        raise EncodeError("all_modules", True, f"command 0x{cid2:02X} addresses one module only")
    if cid2 in _TAKES_COMMAND:
        return Frame(adr=adr, cid2=cid2, info=bytes([ALL_MODULES if all_modules else adr]))
    return Frame(adr=adr, cid2=cid2)


def command_byte(frame: Frame) -> int:
    """The module a request is about: its INFO command byte, else its ADR."""
    return frame.info[0] if frame.info else frame.adr
