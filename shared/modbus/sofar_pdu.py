"""Sofar's custom function codes as pymodbus PDUs, for the client (bridge) and the server (simulator).

* 0x42 passive mode: request ``reg hi, reg lo, val hi, val lo`` (8-byte ADU); response
  ``0x02, status hi, status lo`` (7-byte ADU). Status low byte: 0 accepted, 1 invalid mode, 2 CRC
  failed, 3 busy, 4 invalid data; high byte bits: b0 charge enabled, b1 discharge enabled, b2 battery
  full, b3 battery flat (ME3000SP Passive mode protocol PDF).
* 0x49 heartbeat: register 0x2201, value 0x2202. The PDF does not print a reply; we answer with an
  echo of the request, like FC6, and the client accepts that.

pymodbus keeps one decoder table per side, so the server registers the request classes and the
client registers the response classes under the same function code.

Server side: a request calls ``context.custom_function(device_id, function, register, value)``,
which the serving context (``services.simulator.servers.modbus.RegisterContext``) forwards to the handler the
simulator bound; no handler means exception 01 (illegal function), as a non-Sofar device answers.
"""

from __future__ import annotations

import inspect
import struct
from dataclasses import dataclass
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse, ModbusPDU

PASSIVE_FUNCTION = 0x42
HEARTBEAT_FUNCTION = 0x49
HEARTBEAT_REGISTER = 0x2201
HEARTBEAT_VALUE = 0x2202

STANDBY_REGISTER = 0x0100
DISCHARGE_REGISTER = 0x0101
CHARGE_REGISTER = 0x0102
AUTO_REGISTER = 0x0103
STANDBY_VALUE = 0x5555

PASSIVE_RESULTS = {0: "accepted", 1: "invalid mode", 2: "CRC failed", 3: "busy", 4: "invalid data"}


@dataclass(frozen=True, slots=True)
class PassiveStatus:
    """The status word of a 0x42 response."""

    word: int

    @property
    def result(self) -> int:
        return self.word & 0xFF

    @property
    def accepted(self) -> bool:
        return self.result == 0

    @property
    def result_text(self) -> str:
        return PASSIVE_RESULTS.get(self.result, f"unknown result {self.result}")

    @property
    def charge_enabled(self) -> bool:
        return bool(self.word >> 8 & 0x01)

    @property
    def discharge_enabled(self) -> bool:
        return bool(self.word >> 8 & 0x02)

    @property
    def battery_full(self) -> bool:
        return bool(self.word >> 8 & 0x04)

    @property
    def battery_flat(self) -> bool:
        return bool(self.word >> 8 & 0x08)

    @classmethod
    def build(
        cls,
        result: int = 0,
        *,
        charge_enabled: bool = True,
        discharge_enabled: bool = True,
        battery_full: bool = False,
        battery_flat: bool = False,
    ) -> PassiveStatus:
        flags = charge_enabled | discharge_enabled << 1 | battery_full << 2 | battery_flat << 3
        return cls(flags << 8 | (result & 0xFF))


class _RegisterValueRequest(ModbusPDU):
    """Shared shape of 0x42 and 0x49 requests: one register address and one 16-bit value."""

    rtu_frame_size = 8

    def __init__(self, register: int = 0, value: int = 0, dev_id: int = 1, transaction_id: int = 0) -> None:
        super().__init__(dev_id=dev_id, transaction_id=transaction_id, address=register)
        self.value = value

    def encode(self) -> bytes:
        return struct.pack(">HH", self.address, self.value)

    def decode(self, data: bytes) -> None:
        self.address, self.value = struct.unpack(">HH", data[:4])

    async def _handler_result(self, context: Any, device_id: int) -> int | ExcCodes:
        handler = getattr(context, "custom_function", None)
        if handler is None:
            return ExcCodes.ILLEGAL_FUNCTION
        result = handler(device_id, self.function_code, self.address, self.value)
        if inspect.isawaitable(result):
            result = await result
        return result if isinstance(result, ExcCodes) else int(result)


class PassiveModeRequest(_RegisterValueRequest):
    function_code = PASSIVE_FUNCTION

    async def datastore_update(self, context: Any, device_id: int) -> ModbusPDU:
        status = await self._handler_result(context, device_id)
        if isinstance(status, ExcCodes):
            return ExceptionResponse(self.function_code, status)
        return PassiveModeResponse(
            status=status & 0xFFFF, dev_id=device_id, transaction_id=self.transaction_id
        )


class PassiveModeResponse(ModbusPDU):
    function_code = PASSIVE_FUNCTION
    rtu_byte_count_pos = 2

    def __init__(self, status: int = 0, dev_id: int = 1, transaction_id: int = 0) -> None:
        super().__init__(dev_id=dev_id, transaction_id=transaction_id)
        self.status_word = status

    def encode(self) -> bytes:
        return struct.pack(">BH", 2, self.status_word)

    def decode(self, data: bytes) -> None:
        count, self.status_word = struct.unpack(">BH", data[:3])
        if count != 2:
            raise ValueError(f"0x42 response byte count {count}, expected 2")

    @property
    def passive_status(self) -> PassiveStatus:
        return PassiveStatus(self.status_word)


class HeartbeatRequest(_RegisterValueRequest):
    function_code = HEARTBEAT_FUNCTION

    def __init__(
        self,
        register: int = HEARTBEAT_REGISTER,
        value: int = HEARTBEAT_VALUE,
        dev_id: int = 1,
        transaction_id: int = 0,
    ) -> None:
        super().__init__(register, value, dev_id=dev_id, transaction_id=transaction_id)

    async def datastore_update(self, context: Any, device_id: int) -> ModbusPDU:
        if (self.address, self.value) != (HEARTBEAT_REGISTER, HEARTBEAT_VALUE):
            return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_VALUE)
        outcome = await self._handler_result(context, device_id)
        if isinstance(outcome, ExcCodes) and outcome is not ExcCodes.ILLEGAL_FUNCTION:
            return ExceptionResponse(self.function_code, outcome)
        return HeartbeatResponse(
            self.address, self.value, dev_id=device_id, transaction_id=self.transaction_id
        )


class HeartbeatResponse(_RegisterValueRequest):
    function_code = HEARTBEAT_FUNCTION


SERVER_PDUS: list[type[ModbusPDU]] = [PassiveModeRequest, HeartbeatRequest]
CLIENT_PDUS: list[type[ModbusPDU]] = [PassiveModeResponse, HeartbeatResponse]
