"""A Solarman V5 wifi-logger emulator: V5 frames on TCP in, RTU frames to a handler, and back.

Frame (pysolarmanv5 docs/solarmanv5_protocol.rst)::

    A5 | length u16le | control u16le | sequence 2 B | logger serial u32le | payload | checksum | 15

request control 0x4510, payload ``02 0000 u32 u32 u32 <RTU frame>``; response control 0x1510,
payload ``02 01 u32 u32 u32 <RTU frame>``; length counts the payload; checksum is the low byte of
the sum of every byte between the start byte and the checksum. The response echoes the sequence.

The RTU side is any ``RtuHandler`` (``async (adu) -> adu | None``): ``ContextRtuHandler`` answers from
a ``RegisterContext`` in-process; ``RtuOverTcpForwarder`` relays to an RTU-over-TCP server, as a
real logger relays to its RS485 port. Like the real dongles, the emulator can drop a connection
that has been idle for ``idle_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu import DecodePDU, ModbusPDU

from shared.modbus import rtu
from shared.modbus.sofar_pdu import SERVER_PDUS

log = logging.getLogger("ongrid.modbus.solarman_emulator")

RtuHandler = Callable[[bytes], Awaitable[bytes | None]]

START, END = 0xA5, 0x15
REQUEST_CONTROL, RESPONSE_CONTROL = 0x4510, 0x1510
_HEADER = 11  # start, length, control, sequence, serial
_REQUEST_PREFIX = 15  # frame type, sensor type, three u32 times


def checksum(frame: bytes | bytearray) -> int:
    return sum(frame[1:-2]) & 0xFF


def build_response(request_header: bytes, logger_serial: int, rtu_adu: bytes) -> bytes:
    payload = b"\x02\x01" + bytes(12) + rtu_adu
    frame = bytearray(
        bytes((START,))
        + struct.pack("<HH", len(payload), RESPONSE_CONTROL)
        + request_header[5:7]
        + struct.pack("<I", logger_serial)
        + payload
        + b"\x00"
        + bytes((END,))
    )
    frame[-2] = checksum(frame)
    return bytes(frame)


def parse_request(frame: bytes, logger_serial: int) -> bytes:
    """The RTU frame inside a V5 request; ValueError saying what is wrong otherwise."""
    if frame[0] != START or frame[-1] != END:
        raise ValueError("bad start or end byte")
    if frame[-2] != checksum(frame):
        raise ValueError(f"checksum 0x{frame[-2]:02X}, expected 0x{checksum(frame):02X}")
    (control,) = struct.unpack("<H", frame[3:5])
    if control != REQUEST_CONTROL:
        raise ValueError(f"control code 0x{control:04X} is not a request")
    (serial,) = struct.unpack("<I", frame[7:11])
    if serial != logger_serial:
        raise ValueError(f"logger serial {serial} is not ours ({logger_serial})")
    if frame[11] != 0x02:
        raise ValueError(f"frame type 0x{frame[11]:02X} is not 0x02")
    return frame[_HEADER + _REQUEST_PREFIX : -2]


class ContextRtuHandler:
    """Answer RTU frames from a pymodbus server context (``services.simulator.servers.modbus.RegisterContext``)."""

    def __init__(self, context: Any, custom_pdu: list[type[ModbusPDU]] | None = None) -> None:
        self._context = context
        self._decoder = DecodePDU(True)
        for cls in SERVER_PDUS if custom_pdu is None else custom_pdu:
            self._decoder.register(cls)

    async def __call__(self, adu: bytes) -> bytes | None:
        if len(adu) < 4 or not rtu.check_crc(adu):
            return None  # a device on RS485 ignores a frame with a bad CRC
        unit, body = adu[0], adu[1:-2]
        pdu = self._decoder.decode(body)
        if pdu is None:
            return rtu.frame(unit, body[0] | 0x80, b"\x01")
        pdu.dev_id = unit
        try:
            response = await pdu.datastore_update(self._context, unit)
        except NoSuchIdException:
            return None
        return rtu.frame(unit, response.function_code, response.encode())


class RtuOverTcpForwarder:
    """Relay RTU frames to an RTU-over-TCP server, one at a time, reconnecting as needed."""

    def __init__(self, host: str, port: int, timeout_s: float = 2.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._lock = asyncio.Lock()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def __call__(self, adu: bytes) -> bytes | None:
        async with self._lock:
            try:
                return await asyncio.wait_for(self._exchange(adu), self.timeout_s)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                await self.close()
                return None

    async def _exchange(self, adu: bytes) -> bytes:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.write(adu)
        await writer.drain()
        answer = await reader.readexactly(3)
        length = rtu.response_length(answer)
        assert length is not None
        return answer + await reader.readexactly(length - 3)

    async def close(self) -> None:
        if self._streams is not None:
            _, writer = self._streams
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class SolarmanEmulator:
    """A V5 logger on TCP. ``port=0`` picks a free port; read it from ``.port`` after ``start``."""

    def __init__(
        self,
        handler: RtuHandler,
        *,
        logger_serial: int,
        host: str = "127.0.0.1",
        port: int = 8899,
        idle_timeout_s: float | Callable[[], float | None] | None = None,
    ) -> None:
        self.handler = handler
        self.logger_serial = logger_serial
        self.host = host
        self.port = port
        self.idle_timeout_s = idle_timeout_s
        self.requests = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def _idle_timeout(self) -> float | None:
        # A callable lets a test switch the idle drop on and off while clients are connected.
        value = self.idle_timeout_s
        return value() if callable(value) else value

    @property
    def endpoint(self) -> str:
        return f"solarman://{self.host}:{self.port}#{self.logger_serial}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.drop_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def drop_connections(self) -> None:
        """Close every client connection now (fault injection)."""
        for writer in list(self._writers):
            writer.close()

    async def __aenter__(self) -> SolarmanEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readexactly(3)
        while head[0] != START:  # resynchronise on garbage
            head = head[1:] + await reader.readexactly(1)
        (length,) = struct.unpack("<H", head[1:3])
        return head + await reader.readexactly(length + _HEADER - 3 + 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                idle = self._idle_timeout()
                try:
                    if idle is None:
                        frame = await self._read_frame(reader)
                    else:
                        frame = await asyncio.wait_for(self._read_frame(reader), idle)
                except TimeoutError:
                    self.dropped += 1
                    log.debug("dropping idle connection after %.1f s", idle)
                    return
                try:
                    adu = parse_request(frame, self.logger_serial)
                except ValueError as exc:
                    log.debug("ignoring V5 frame: %s", exc)
                    continue
                self.requests += 1
                answer = await self.handler(adu)
                if answer is None:
                    continue  # the RS485 device stayed silent; the client times out
                writer.write(build_response(frame, self.logger_serial, answer))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
