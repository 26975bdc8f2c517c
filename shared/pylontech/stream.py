"""Byte streams for RS485 links: a serial port (or pty) and a raw TCP socket (ser2net).

Why not pyserial-asyncio: it is not installed and would be one more pinned dependency for ~60
lines; why not blocking pyserial in a thread: a thread cannot be cancelled, so shutdown and
timeouts would wait on the port. Here pyserial only configures the port (termios: baud, 8N1,
raw); the file descriptor is then read by the event loop (``add_reader``), which is what
pyserial-asyncio does on POSIX. Windows is not a target (the fleet runs on Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from .errors import TransportError

# A frame is at most ~8 KB of ASCII (LENID is 12 bits); anything longer between two '\r' is noise.
MAX_FRAME = 0x1000 + 32


class FrameScanner:
    """Cuts a byte stream into candidate frames: from the last ``~`` before each ``\\r``.

    Bytes before a ``~`` are line noise (a half frame after a timeout, a glitch at power-up) and
    are skipped, so the stream resynchronises at the next frame start.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.skipped = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames: list[bytes] = []
        while (end := self._buffer.find(b"\r")) >= 0:
            segment = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            start = segment.rfind(b"~")
            if start < 0:
                self.skipped += len(segment)
                continue
            self.skipped += start
            frames.append(segment[start:])
        if len(self._buffer) > MAX_FRAME:
            # Keep a possible frame start; drop the rest.
            start = self._buffer.rfind(b"~")
            keep = self._buffer[start:] if 0 <= start and len(self._buffer) - start <= MAX_FRAME else b""
            self.skipped += len(self._buffer) - len(keep)
            self._buffer = bytearray(keep)
        return frames

    def clear(self) -> None:
        self.skipped += len(self._buffer)
        self._buffer.clear()


class ByteStream:
    """What a link needs: bytes in (as chunks, in order), bytes out, close."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._chunks: asyncio.Queue[bytes | BaseException] = asyncio.Queue()

    async def read(self) -> bytes:
        """The next chunk of received bytes; raises ``TransportError`` when the stream is gone."""
        item = await self._chunks.get()
        if isinstance(item, BaseException):
            self._chunks.put_nowait(item)  # every later read fails the same way
            raise TransportError(f"{self.name}: {item}") from item
        return item

    def discard_input(self) -> None:
        """Drop what was received and not yet read (a stale answer after a timeout)."""
        while not self._chunks.empty():
            item = self._chunks.get_nowait()
            if isinstance(item, BaseException):
                self._chunks.put_nowait(item)
                return

    def _received(self, data: bytes | BaseException) -> None:
        self._chunks.put_nowait(data)

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class FdStream(ByteStream):
    """A non-blocking file descriptor (serial port, pty) driven by the event loop."""

    def __init__(self, fd: int, name: str, on_close: Callable[[], None] | None = None) -> None:
        super().__init__(name)
        self._fd = fd
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._closed = False
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO on a pty whose other side closed, ENXIO/ENODEV when a USB adapter is pulled.
            self._loop.remove_reader(self._fd)
            self._received(exc)
            return
        if not data:
            self._loop.remove_reader(self._fd)
            self._received(EOFError("end of file"))
            return
        self._received(data)

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise TransportError(f"{self.name}: closed")
        view = memoryview(data)
        while view:
            try:
                sent = os.write(self._fd, view)
            except BlockingIOError:
                ready = self._loop.create_future()
                self._loop.add_writer(self._fd, ready.set_result, None)
                try:
                    await ready
                finally:
                    self._loop.remove_writer(self._fd)
                continue
            except OSError as exc:
                raise TransportError(f"{self.name}: write failed: {exc}") from exc
            view = view[sent:]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        if self._on_close is not None:
            self._on_close()
        else:
            with contextlib.suppress(OSError):
                os.close(self._fd)


class TcpStream(ByteStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str) -> None:
        super().__init__(name)
        self._writer = writer
        self._pump = asyncio.get_running_loop().create_task(self._run(reader))

    async def _run(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(4096):
                self._received(data)
            self._received(EOFError("connection closed by peer"))
        except OSError as exc:
            self._received(exc)

    async def write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise TransportError(f"{self.name}: write failed: {exc}") from exc

    async def close(self) -> None:
        self._pump.cancel()
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await self._writer.wait_closed()


async def open_serial(device: str, baudrate: int) -> FdStream:
    """Open a serial port (or a pty) raw 8N1 at ``baudrate``."""
    import serial  # pyserial: only for termios setup

    try:
        port = serial.Serial(device, baudrate=baudrate, bytesize=8, parity="N", stopbits=1, timeout=0)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise TransportError(f"cannot open serial port {device} at {baudrate} baud: {exc}") from exc
    return FdStream(port.fileno(), f"serial {device}", on_close=port.close)


async def open_tcp(host: str, port: int, timeout_s: float) -> TcpStream:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise TransportError(f"cannot connect to {host}:{port}: {reason}") from exc
    return TcpStream(reader, writer, f"tcp {host}:{port}")
