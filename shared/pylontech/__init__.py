"""Pylontech RS485 (PYLON low-voltage protocol v3.3): a pure codec and an asyncio link.

``frame`` and ``payloads`` are pure and work both ways (the simulator encodes what the bridge
decodes); ``link`` is the only module here that does I/O.
"""

from .errors import DeviceError, EncodeError, PylontechDecodeError, PylontechError, TransportError
from .frame import CID1_BATTERY, VERSION, Cid2, Frame, Rtn, decode_frame, encode_frame, rtn_meaning
from .payloads import (
    ALL_MODULES,
    AlarmLevel,
    AlarmResponse,
    AnalogResponse,
    ChargeDischarge,
    ManufacturerInfo,
    ModuleAlarms,
    ModuleAnalog,
    SerialNumber,
    SystemParameters,
    c_to_dk,
    dk_to_c,
)
from .requests import command_byte, request

__all__ = [
    "ALL_MODULES",
    "CID1_BATTERY",
    "VERSION",
    "AlarmLevel",
    "AlarmResponse",
    "AnalogResponse",
    "ChargeDischarge",
    "Cid2",
    "DeviceError",
    "EncodeError",
    "Frame",
    "ManufacturerInfo",
    "ModuleAlarms",
    "ModuleAnalog",
    "PylontechDecodeError",
    "PylontechError",
    "Rtn",
    "SerialNumber",
    "SystemParameters",
    "TransportError",
    "c_to_dk",
    "command_byte",
    "decode_frame",
    "dk_to_c",
    "encode_frame",
    "request",
    "rtn_meaning",
]
