"""A Solarman V5 data-logger emulator (the wifi stick on the inverter), TCP port 8899 style.

Each V5 request carries a Modbus RTU frame; the logger forwards it to the inverter's RS485 port and
wraps the answer in a V5 response. Here the "RS485 port" is the simulator's own RTU-over-TCP server
for the same inverter, so the answer comes from the same register map and 0x42/0x49 hooks.

Frame (pysolarmanv5 docs/solarmanv5_protocol.rst): ``A5 | len u16le | control u16le | seq u16le |
logger serial u32le | payload | checksum | 15``; request control 0x4510, response 0x1510; request
payload ``02 0000 u32 u32 u32`` + RTU, response payload ``02 01 u32 u32 u32`` + RTU; checksum is
the sum of bytes ``[1:-2]`` mod 256. Like real loggers it drops a client idle for ``idle_drop_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from dataclasses import dataclass

from shared.logs import get_logger
from shared.modbus.rtu import response_length

from .faults import DeviceFaults, corrupt_crc

log = get_logger("simulator.solarman")

START, END = 0xA5, 0x15
REQUEST_CONTROL = 0x4510
RESPONSE_CONTROL = 0x1510
HEADER_LEN = 11  # start, length, control, sequence, serial
REQUEST_PAYLOAD_PREFIX = 15  # frame type, sensor type (2), three u32 times
RTU_TIMEOUT_S = 2.0


class V5Error(ValueError):
    pass


def checksum(frame: bytes) -> int:
    return sum(frame[1:-2]) & 0xFF


@dataclass(frozen=True, slots=True)
class V5Request:
    sequence: int
    logger_serial: int
    rtu: bytes


def parse_request(frame: bytes) -> V5Request:
    """One complete V5 request frame -> its parts; ``V5Error`` says what is wrong."""
    if len(frame) < HEADER_LEN + REQUEST_PAYLOAD_PREFIX + 2:
        raise V5Error(f"V5 frame of {len(frame)} bytes is too short")
    if frame[0] != START or frame[-1] != END:
        raise V5Error(f"V5 frame starts 0x{frame[0]:02X} / ends 0x{frame[-1]:02X}, expected A5 / 15")
    if checksum(frame) != frame[-2]:
        raise V5Error(f"V5 checksum 0x{frame[-2]:02X}, expected 0x{checksum(frame):02X}")
    length, control, sequence, serial = struct.unpack("<HHHI", frame[1:HEADER_LEN])
    if control != REQUEST_CONTROL:
        raise V5Error(f"V5 control code 0x{control:04X} is not a request (0x{REQUEST_CONTROL:04X})")
    if length != len(frame) - 13:
        raise V5Error(f"V5 length field {length} does not match the frame ({len(frame) - 13})")
    return V5Request(sequence, serial, bytes(frame[HEADER_LEN + REQUEST_PAYLOAD_PREFIX : -2]))


def build_response(sequence: int, logger_serial: int, rtu: bytes, uptime_s: int = 0) -> bytes:
    payload = bytes([0x02, 0x01]) + struct.pack("<III", uptime_s, uptime_s, 0) + rtu
    body = (
        bytes([START])
        + struct.pack("<HHHI", len(payload), RESPONSE_CONTROL, sequence, logger_serial)
        + payload
    )
    frame = bytearray(body + b"\x00" + bytes([END]))
    frame[-2] = checksum(bytes(frame))
    return bytes(frame)


@dataclass
class SolarmanLogger:
    """Serve V5 on ``host:port``, forwarding RTU frames to an RTU-over-TCP server at ``rtu_host:rtu_port``."""

    host: str
    port: int
    logger_serial: int
    rtu_host: str
    rtu_port: int
    faults: DeviceFaults
    _server: asyncio.Server | None = None
    _started: float = 0.0

    async def start(self) -> int:
        self._started = time.monotonic()
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        rtu_reader, rtu_writer = await asyncio.open_connection(self.rtu_host, self.rtu_port)
        try:
            while True:
                frame = await self._read_frame(reader)
                if frame is None:
                    break
                try:
                    request = parse_request(frame)
                except V5Error as exc:
                    log.info("dropping bad V5 frame from %s: %s", peer, exc)
                    continue
                if request.logger_serial != self.logger_serial or self.faults.silent:
                    continue  # a logger ignores frames for another serial number
                rtu = await self._forward(request.rtu, rtu_reader, rtu_writer)
                if rtu is None:
                    continue
                if self.faults.crc:
                    rtu = corrupt_crc(rtu)
                uptime = int(time.monotonic() - self._started)
                writer.write(build_response(request.sequence, self.logger_serial, rtu, uptime))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, rtu_writer):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next V5 frame, or None when the client leaves or stays idle past ``idle_drop_s``."""
        idle = self.faults.idle_drop_s
        try:
            head = await asyncio.wait_for(reader.readexactly(3), timeout=idle)
        except TimeoutError:
            log.info("dropping idle Solarman client after %.0f s", idle)
            return None
        except asyncio.IncompleteReadError:
            return None
        if head[0] != START:
            return b""  # resynchronise: parse_request rejects it and the loop reads on
        (length,) = struct.unpack("<H", head[1:3])
        rest = await asyncio.wait_for(reader.readexactly(length + 10), timeout=RTU_TIMEOUT_S)
        return head + rest

    async def _forward(
        self, rtu: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes | None:
        writer.write(rtu)
        await writer.drain()
        try:
            buffer = await asyncio.wait_for(reader.readexactly(3), timeout=RTU_TIMEOUT_S)
            total = response_length(buffer)
            if total is None:
                return None
            return buffer + await asyncio.wait_for(reader.readexactly(total - 3), timeout=RTU_TIMEOUT_S)
        except TimeoutError:
            return None  # the inverter did not answer (unit mismatch, broadcast): neither does the logger
