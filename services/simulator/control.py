"""The test side channel: a tiny HTTP/1.1 server for ground truth and fault injection.

    GET  /truth                    -> SimTruth JSON plus energy totals and inverter state
    GET  /clock                    -> {"sim_time", "start", "speed", "held"}
    POST /clock                    body {"run": true} releases a clock started held (``--hold``)
    GET  /writes                   -> {"total": n, "writes": [every 0x42/0x49 request received, in order]}
    GET  /faults                   -> {device: {fault: value}}
    POST /faults/{device}          body {"silent": true} / {"crc": true} / {"exception": 4} /
                                   {"out_of_range": true} / {"idle_drop_s": 10} /
                                   {"soc_offset_pct": -17} (an inverter's SoC reads off the BMS's)
    POST /faults/{device}/clear    back to normal (the logger keeps its configured idle drop)
    POST /grid                     body {"up": false} cuts the grid (EPS), {"up": true} restores it
    POST /inverter                 body {"faulted": true} puts the inverter in fault state

For tests and benchmarks only: it listens on loopback by default and has no authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from shared.logs import get_logger

log = get_logger("simulator.control")

Handler = Callable[[str, str, Any], Awaitable[tuple[int, Any]]]
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Too Large"}
MAX_BODY = 64 * 1024


@dataclass
class ControlServer:
    host: str
    port: int
    handler: Handler
    _server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await self._one(reader)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            writer.close()
            return
        data = json.dumps(body, default=str).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _one(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        line = (await asyncio.wait_for(reader.readline(), 5)).decode("latin-1").strip()
        parts = line.split()
        if len(parts) != 3:
            return 400, {"error": f"bad request line {line!r}"}
        method, path, _ = parts
        length = 0
        while True:
            header = (await asyncio.wait_for(reader.readline(), 5)).decode("latin-1").strip()
            if not header:
                break
            name, _, value = header.partition(":")
            if name.strip().lower() == "content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    return 400, {"error": f"bad Content-Length {value.strip()!r}"}
        if length > MAX_BODY:
            return 413, {"error": f"body of {length} bytes is over {MAX_BODY}"}
        raw = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
        try:
            payload = json.loads(raw) if raw else None
        except json.JSONDecodeError as exc:
            return 400, {"error": f"body is not JSON: {exc}"}
        try:
            return await self.handler(method.upper(), path, payload)
        except ValueError as exc:
            return 400, {"error": str(exc)}
