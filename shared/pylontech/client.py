"""The master side of a Pylontech RS485 bus: one request, one answer, under the bus's lock.

One ``PylontechClient`` per physical bus (serial port or ser2net socket). Several batteries or
modules on that bus share it, so their transactions never interleave. The link opens lazily and
is dropped on a transport failure, so the next transaction reconnects by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import DeviceError, PylontechDecodeError, PylontechError, TransportError
from .frame import CID1_BATTERY, Cid2, Frame, Rtn, decode_frame, rtn_meaning
from .payloads import (
    AlarmResponse,
    AnalogResponse,
    ChargeDischarge,
    ManufacturerInfo,
    ModuleAlarms,
    ModuleAnalog,
    SerialNumber,
    SystemParameters,
)
from .requests import request
from .stream import ByteStream, FrameScanner, open_serial, open_tcp

T = TypeVar("T")
Opener = Callable[[], Awaitable[ByteStream]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the bus is: a serial device, or ``host:port`` of a raw serial-over-TCP server."""

    device: str | None = None
    baudrate: int = 9600
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, url: str, baudrate: int = 9600) -> Endpoint:
        """``/dev/ttyUSB0`` or ``socket://host:port`` (the pyserial URL ser2net users know)."""
        if url.startswith("socket://"):
            host, sep, port = url[len("socket://") :].rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError(f"serial URL {url!r} must look like socket://host:port")
            return cls(host=host.strip("[]"), port=int(port))
        return cls(device=url, baudrate=baudrate)

    @property
    def key(self) -> str:
        return f"socket://{self.host}:{self.port}" if self.device is None else self.device

    def opener(self, timeout_s: float) -> Opener:
        if self.device is not None:
            device, baud = self.device, self.baudrate
            return lambda: open_serial(device, baud)
        if self.host is None or self.port is None:
            raise ValueError("an endpoint needs a device or a host and port")
        host, port = self.host, self.port
        return lambda: open_tcp(host, port, timeout_s)


class PylontechClient:
    def __init__(self, opener: Opener, *, timeout_s: float = 2.0, retries: int = 1, name: str = "") -> None:
        self._opener = opener
        self.timeout_s = timeout_s
        self.retries = retries
        self.name = name
        self.lock = asyncio.Lock()
        self._stream: ByteStream | None = None
        self._scanner = FrameScanner()
        self.transactions = 0
        self.failures = 0

    @classmethod
    def for_endpoint(cls, endpoint: Endpoint, *, timeout_s: float = 2.0, retries: int = 1) -> PylontechClient:
        return cls(endpoint.opener(timeout_s), timeout_s=timeout_s, retries=retries, name=endpoint.key)

    @property
    def noise_bytes(self) -> int:
        """Bytes skipped while looking for frame starts since the client was made."""
        return self._scanner.skipped

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()

    async def transact(self, frame: Frame) -> Frame:
        """Send ``frame`` and return the answer with RTN 0. Retries ``retries`` times on any failure."""
        last: PylontechError | None = None
        async with self.lock:
            for _ in range(self.retries + 1):
                self.transactions += 1
                try:
                    return await self._once(frame)
                except TransportError as exc:
                    last = exc
                    await self.close()
                except PylontechDecodeError as exc:
                    last = exc
                self.failures += 1
        assert last is not None
        raise last

    async def _once(self, frame: Frame) -> Frame:
        if self._stream is None:
            self._stream = await self._opener()
            self._scanner.clear()
        stream = self._stream
        # Whatever sits in the buffer now answers nothing we will ask: drop it before asking.
        stream.discard_input()
        self._scanner.clear()
        await stream.write(frame.encode())
        # Noise can hold a '~' and a '\r' too, so an unreadable candidate is skipped, not fatal: the
        # real answer may still follow. If none does, the unreadable one is the better error.
        unreadable: PylontechDecodeError | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    for raw in self._scanner.feed(await stream.read()):
                        try:
                            answer = decode_frame(raw)
                        except PylontechDecodeError as exc:
                            unreadable = exc
                            continue
                        if answer.adr != frame.adr or answer.cid1 != CID1_BATTERY:
                            problem = f"answer from address {answer.adr} to a request for {frame.adr}"
                            unreadable = PylontechDecodeError("ADR", 3, raw, problem)
                            continue
                        if answer.rtn != Rtn.NORMAL:
                            raise DeviceError(frame.adr, frame.cid2, answer.rtn, rtn_meaning(answer.rtn))
                        return answer
        except TimeoutError:
            if unreadable is not None:
                raise unreadable from None
            what = f"address {frame.adr} to 0x{frame.cid2:02X}"
            raise TransportError(f"{self.name}: no answer from {what} in {self.timeout_s:g} s") from None

    # --- one method per command --------------------------------------------------------------

    async def _decode(self, adr: int, cid2: Cid2, decode: Callable[[bytes], T]) -> T:
        answer = await self.transact(request(adr, cid2))
        return decode(answer.info)

    async def analog(self, adr: int) -> ModuleAnalog:
        return (await self._decode(adr, Cid2.ANALOG, AnalogResponse.decode)).modules[0]

    async def alarms(self, adr: int) -> ModuleAlarms:
        return (await self._decode(adr, Cid2.ALARM, AlarmResponse.decode)).modules[0]

    async def charge_discharge(self, adr: int) -> ChargeDischarge:
        return await self._decode(adr, Cid2.CHARGE_DISCHARGE, ChargeDischarge.decode)

    async def system_parameters(self, adr: int) -> SystemParameters:
        return await self._decode(adr, Cid2.SYSTEM_PARAMETERS, SystemParameters.decode)

    async def manufacturer_info(self, adr: int) -> ManufacturerInfo:
        return await self._decode(adr, Cid2.MANUFACTURER_INFO, ManufacturerInfo.decode)

    async def serial_number(self, adr: int) -> SerialNumber:
        return await self._decode(adr, Cid2.SERIAL_NUMBER, SerialNumber.decode)
