"""Serve registers over pymodbus servers from callables: the simulator's side of every transport.

Generic on purpose (no physics): a ``DeviceSource`` answers reads, writes and Sofar's custom
functions for one unit id; ``MapSource`` serves a register map from a callable returning current
physical values. ``start_server`` puts a ``RegisterContext`` on Modbus TCP, RTU over TCP, or RTU on a
serial port / pty.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from shared.modbus.sofar_pdu import SERVER_PDUS
from shared.registers import RegisterImage, RegisterMap, Value, encode


class ServeError(Exception):
    """Raised by a source to answer with a Modbus exception code (e.g. 2, illegal address)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"modbus exception {code}")
        self.code = code


class DeviceSource(Protocol):
    def read(self, function: int, address: int, count: int) -> list[int]: ...

    def write(self, address: int, values: Sequence[int]) -> None: ...


CustomHandler = Callable[[int, int, int, int], int | Awaitable[int]]
"""``(unit, function, register, value) -> status`` for Sofar's 0x42/0x49."""


@dataclass
class MapSource:
    """A register map served from ``values()``, re-encoded on every read so answers are current.

    Addresses between a function's first and last point that no point covers answer 0 (as a real
    Sofar does); forbidden addresses and addresses outside that span answer exception 02.
    ``on_write`` receives FC6/FC16 writes as ``(address, registers)``; without it writes answer 01.
    """

    regmap: RegisterMap
    values: Callable[[], Mapping[str, Value]]
    on_write: Callable[[int, Sequence[int]], None] | None = None
    _spans: dict[int, tuple[int, int]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for point in self.regmap.readable_points():
            lo, hi = self._spans.get(point.function, (point.address, point.end))
            self._spans[point.function] = (min(lo, point.address), max(hi, point.end))

    def image(self) -> RegisterImage:
        return encode(self.regmap, self.values(), strict=False)

    def read(self, function: int, address: int, count: int) -> list[int]:
        span = self._spans.get(function)
        if span is None or address < span[0] or address + count > span[1]:
            raise ServeError(2)
        if any(self.regmap.is_forbidden(function, a) for a in range(address, address + count)):
            raise ServeError(2)
        space = self.image().get(function, {})
        return [space.get(a, 0) for a in range(address, address + count)]

    def write(self, address: int, values: Sequence[int]) -> None:
        if self.on_write is None:
            raise ServeError(1)
        self.on_write(address, values)


class RegisterContext(ModbusServerContext):
    """A pymodbus server context backed by ``DeviceSource`` objects keyed by unit id.

    Subclasses ModbusServerContext only so pymodbus's server accepts it; its storage is ours.
    """

    def __init__(self, devices: Mapping[int, DeviceSource], custom: CustomHandler | None = None) -> None:
        # No super().__init__: the parent builds (deprecated) simulator storage we do not use.
        self._sources = dict(devices)
        self._custom = custom
        self.old_simulator = True  # tells the pymodbus server to call our async_getValues directly
        self.simdevices = []

    async def custom_function(
        self, device_id: int, function: int, register: int, value: int
    ) -> int | ExcCodes:
        if device_id not in self._sources:
            return ExcCodes.GATEWAY_NO_RESPONSE
        if self._custom is None:
            return ExcCodes.ILLEGAL_FUNCTION
        try:
            result = self._custom(device_id, function, register, value)
            return int(await result) if inspect.isawaitable(result) else int(result)
        except ServeError as exc:
            return ExcCodes(exc.code)

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        source = self._sources.get(device_id)
        if source is None:
            return ExcCodes.GATEWAY_NO_RESPONSE
        if func_code in (6, 16):
            func_code = 3  # a write's echo reads the holding register back
        if func_code not in (3, 4):
            return ExcCodes.ILLEGAL_FUNCTION
        try:
            return source.read(func_code, address, count)
        except ServeError as exc:
            return ExcCodes(exc.code)

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: Sequence[int] | Sequence[bool]
    ) -> ExcCodes | None:
        source = self._sources.get(device_id)
        if source is None:
            return ExcCodes.GATEWAY_NO_RESPONSE
        if func_code not in (6, 16):
            return ExcCodes.ILLEGAL_FUNCTION
        try:
            source.write(address, [int(v) for v in values])
        except ServeError as exc:
            return ExcCodes(exc.code)
        return None


ServeKind = Literal["modbus_tcp", "rtu_over_tcp", "modbus_rtu"]


@dataclass
class ServedEndpoint:
    """A running server. ``endpoint`` is printable (``tcp://127.0.0.1:5020``, ``rtu:/tmp/ttyA``)."""

    kind: ServeKind
    endpoint: str
    server: ModbusTcpServer | ModbusSerialServer

    async def close(self) -> None:
        await self.server.shutdown()


async def start_server(
    context: RegisterContext,
    kind: ServeKind,
    *,
    host: str = "127.0.0.1",
    port: int = 502,
    device: str | None = None,
    baudrate: int = 9600,
    parity: Literal["N", "E", "O"] = "N",
    stopbits: int = 1,
    trace_packet: Callable[[bool, bytes], bytes] | None = None,
    custom_pdu: list[type[ModbusPDU]] | None = None,
) -> ServedEndpoint:
    """Start serving ``context`` in the background and return once it listens.

    ``trace_packet`` sees (and may alter) every byte string sent and received: the hook for fault
    injection such as corrupting a CRC.
    """
    pdus = list(SERVER_PDUS if custom_pdu is None else custom_pdu)
    server: ModbusTcpServer | ModbusSerialServer
    if kind in ("modbus_tcp", "rtu_over_tcp"):
        probe_listen(host, port)
        framer = FramerType.SOCKET if kind == "modbus_tcp" else FramerType.RTU
        server = ModbusTcpServer(
            context, framer=framer, address=(host, port), custom_pdu=pdus, trace_packet=trace_packet
        )
        endpoint = f"{'tcp' if kind == 'modbus_tcp' else 'rtu+tcp'}://{host}:{port}"
    elif kind == "modbus_rtu":
        if device is None:
            raise ValueError("modbus_rtu needs device= (a serial port or pty path)")
        server = ModbusSerialServer(
            context,
            framer=FramerType.RTU,
            port=device,
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            custom_pdu=pdus,
            trace_packet=trace_packet,
        )
        endpoint = f"rtu:{device}"
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    try:
        await server.serve_forever(background=True)
    except RuntimeError as exc:  # pymodbus says only "Could not start listen, please check address."
        raise OSError(f"cannot listen on {endpoint}: {exc}") from None
    return ServedEndpoint(kind=kind, endpoint=endpoint, server=server)


def probe_listen(host: str, port: int) -> None:
    """Raise the operating system's ``OSError`` if ``host:port`` cannot be listened on (pymodbus
    swallows it and says only "Could not start listen"). Bound with SO_REUSEADDR as asyncio does."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)


def static_source(image: Mapping[int, Mapping[int, int]]) -> DeviceSource:
    """A fixed register image (tests, fixtures). Unknown addresses answer exception 02."""

    class _Static:
        def read(self, function: int, address: int, count: int) -> list[int]:
            space = image.get(function, {})
            try:
                return [space[a] for a in range(address, address + count)]
            except KeyError:
                raise ServeError(2) from None

        def write(self, address: int, values: Sequence[int]) -> None:
            raise ServeError(1)

    return _Static()


__all__ = [
    "CustomHandler",
    "DeviceSource",
    "MapSource",
    "RegisterContext",
    "ServeError",
    "ServedEndpoint",
    "start_server",
    "static_source",
]
