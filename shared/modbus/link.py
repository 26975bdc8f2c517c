"""Links: one async client per physical endpoint, with a lock, retries, reconnect and one error family.

Several devices on one RS485 bus (an inverter and two meters behind one adapter) share one Link,
so a passive-mode command never interleaves with a meter poll: ``open_link`` returns the same
object for the same endpoint. Each call takes the link's lock.

Failure policy: a timeout, a bad frame or a lost connection closes the client and the call is
retried ``retries`` times on a fresh connection; a Modbus exception response is the device's
answer and is raised at once. Before every call a connection known to be closed (a Solarman logger
drops idle TCP after ~10 s) is reopened silently.

A link only reads and writes: what a vendor's custom function means (Sofar's passive mode and
heartbeat) belongs to that vendor's driver, which hands ``raw`` its request and response PDUs. A
custom function is sent once unless the driver says a repeat is harmless (``retry=True``): the link
cannot know whether a request that timed out was executed, and a counted write must not reach the
wire twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pysolarmanv5 import NoSocketAvailableError, PySolarmanV5Async, V5FrameError

from shared.config.transports import ModbusRtu, ModbusTcp, RtuOverTcp, SolarmanV5

from . import rtu
from .errors import LinkConnectionError, LinkError, LinkExceptionResponse, LinkFramingError, LinkTimeout

log = logging.getLogger("ongrid.modbus")
T = TypeVar("T")

LinkTransport = ModbusTcp | ModbusRtu | RtuOverTcp | SolarmanV5
R = TypeVar("R", bound=ModbusPDU)


class Link(ABC):
    """An endpoint that answers Modbus requests. Unit ids are per call: a bus carries many."""

    def __init__(self, endpoint: str, *, timeout_s: float, retries: int) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.retries = retries
        self._lock = asyncio.Lock()
        self.transactions = 0
        self.failures = 0
        self.reconnects = 0
        self._had_connection = False
        # Custom-function response decoders the drivers have used, by function code.
        self._responses: dict[int, type[ModbusPDU]] = {}

    # ------------------------------------------------------------------ public API

    async def read(self, function: int, address: int, count: int, unit: int) -> list[int]:
        """``count`` registers from ``address`` with FC3 (holding) or FC4 (input)."""
        if function not in (3, 4):
            raise ValueError(f"read function must be 3 or 4, not {function}")
        if not 1 <= count <= 125:
            raise ValueError(f"read count must be 1..125, not {count}")
        what = f"FC{function} 0x{address:04X}+{count} unit {unit}"
        return await self._call(what, lambda: self._read(function, address, count, unit))

    async def write_register(self, address: int, value: int, unit: int) -> None:
        """FC6: one holding register."""
        _check_register(value)
        await self._call(
            f"FC6 0x{address:04X}={value} unit {unit}", lambda: self._write(address, [value], unit, 6)
        )

    async def write_registers(self, address: int, values: Sequence[int], unit: int) -> None:
        """FC16: consecutive holding registers in one transaction."""
        for value in values:
            _check_register(value)
        what = f"FC16 0x{address:04X}+{len(values)} unit {unit}"
        await self._call(what, lambda: self._write(address, list(values), unit, 16))

    async def raw(self, request: ModbusPDU, response: type[R], unit: int, *, retry: bool = False) -> R:
        """Send a custom-function PDU and return its response, decoded as ``response``.

        ``retry``: whether a request that got no answer may be sent again (only when executing it
        twice is harmless and costs nothing); by default it goes on the wire once.
        """
        if response.function_code != request.function_code:
            raise ValueError(
                f"response 0x{response.function_code:02X} does not answer function 0x{request.function_code:02X}"
            )
        self._responses[response.function_code] = response
        request.dev_id = unit
        what = f"function 0x{request.function_code:02X} unit {unit}"
        answer = await self._call(what, lambda: self._raw(request, unit), attempts=None if retry else 1)
        if not isinstance(answer, response):
            raise LinkFramingError(self.endpoint, f"{what} answered with {type(answer).__name__}")
        return answer

    async def close(self) -> None:
        await self._disconnect()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint})"

    # ------------------------------------------------------------------ retry core

    async def _call(self, what: str, op: Callable[[], Awaitable[T]], attempts: int | None = None) -> T:
        async with self._lock:
            return await self._attempts(what, op, attempts)

    async def _attempts(self, what: str, op: Callable[[], Awaitable[T]], attempts: int | None) -> T:
        last: LinkError | None = None
        for attempt in range(self.retries + 1 if attempts is None else attempts):
            try:
                await self._ensure_connected()
                self.transactions += 1
                # Our own deadline on top of the library's: a wedged socket must not hang a poll.
                return await asyncio.wait_for(op(), self.timeout_s * 2 + 1)
            except LinkExceptionResponse:
                raise
            except LinkError as exc:
                last = exc
            except TimeoutError:
                last = LinkTimeout(self.endpoint, f"{what}: no answer within {self.timeout_s:g} s")
            self.failures += 1
            log.debug("%s attempt %d failed: %s", what, attempt + 1, last)
            await self._disconnect()
        assert last is not None
        raise last

    def _connected(self) -> None:
        if self._had_connection:
            self.reconnects += 1
        self._had_connection = True

    # ------------------------------------------------------------------ per-transport

    @abstractmethod
    async def _ensure_connected(self) -> None: ...

    @abstractmethod
    async def _disconnect(self) -> None: ...

    @abstractmethod
    async def _read(self, function: int, address: int, count: int, unit: int) -> list[int]: ...

    @abstractmethod
    async def _write(self, address: int, values: list[int], unit: int, function: int) -> None: ...

    @abstractmethod
    async def _raw(self, request: ModbusPDU, unit: int) -> ModbusPDU: ...


def _check_register(value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"register value {value} is not 0..65535")


class PymodbusLink(Link):
    """Modbus TCP, RTU on a serial port, and RTU framed over TCP, through pymodbus."""

    def __init__(self, endpoint: str, factory: Callable[..., Any], *, timeout_s: float, retries: int) -> None:
        super().__init__(endpoint, timeout_s=timeout_s, retries=retries)
        self._factory = factory
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._received = 0

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._received += len(data)
        return data

    async def _ensure_connected(self) -> None:
        if self._client is not None and self._client.connected:
            return
        if self._client is not None:
            self._client.close()
        client = self._factory(trace_packet=self._trace)
        self._client = client
        try:
            connected = await client.connect()
        except (OSError, ModbusException) as exc:
            raise LinkConnectionError(self.endpoint, f"cannot connect: {exc}") from None
        if not connected:
            raise LinkConnectionError(self.endpoint, "cannot connect (refused, unreachable or no such port)")
        self._connected()

    async def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _execute(self, what: str, function: int, call: Callable[[], Awaitable[ModbusPDU]]) -> ModbusPDU:
        before = self._received
        try:
            response = await call()
        except ConnectionException as exc:
            raise LinkConnectionError(self.endpoint, f"{what}: connection lost ({exc})") from None
        except ModbusIOException:
            if self._received > before:
                raise LinkFramingError(
                    self.endpoint,
                    f"{what}: {self._received - before} bytes arrived but no valid frame (CRC?)",
                ) from None
            raise LinkTimeout(self.endpoint, f"{what}: no answer within {self.timeout_s:g} s") from None
        except ModbusException as exc:
            raise LinkFramingError(self.endpoint, f"{what}: {exc}") from None
        if response is None:
            raise LinkFramingError(self.endpoint, f"{what}: no decodable response")
        if response.isError():
            raise LinkExceptionResponse(self.endpoint, function, getattr(response, "exception_code", 0), what)
        return response

    @property
    def client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        if self._client is None:
            raise LinkConnectionError(self.endpoint, "not connected")
        return self._client

    async def _read(self, function: int, address: int, count: int, unit: int) -> list[int]:
        client = self.client
        reader = client.read_holding_registers if function == 3 else client.read_input_registers
        what = f"FC{function} 0x{address:04X}+{count}"
        response = await self._execute(what, function, lambda: reader(address, count=count, device_id=unit))
        registers = list(response.registers)
        if len(registers) != count:
            raise LinkFramingError(self.endpoint, f"{what}: got {len(registers)} registers")
        return registers

    async def _write(self, address: int, values: list[int], unit: int, function: int) -> None:
        client = self.client
        what = f"FC{function} 0x{address:04X}"
        if function == 6:
            await self._execute(what, 6, lambda: client.write_register(address, values[0], device_id=unit))
        else:
            await self._execute(what, 16, lambda: client.write_registers(address, values, device_id=unit))

    async def _raw(self, request: ModbusPDU, unit: int) -> ModbusPDU:
        client = self.client
        # Decoders belong to the client, which a reconnect replaces.
        client.register(self._responses[request.function_code])
        what = f"function 0x{request.function_code:02X}"
        return await self._execute(what, request.function_code, lambda: client.execute(False, request))


class SolarmanLink(Link):
    """RTU frames inside Solarman V5 frames to a wifi logger (TCP 8899), through pysolarmanv5."""

    def __init__(self, config: SolarmanV5) -> None:
        super().__init__(
            f"solarman://{config.host}:{config.port}#{config.logger_serial}",
            timeout_s=config.timeout_s,
            retries=config.retries,
        )
        self._config = config
        self._client: PySolarmanV5Async | None = None

    async def _ensure_connected(self) -> None:
        client = self._client
        if client is not None and client.writer is not None and not client.writer.is_closing():
            return
        if client is not None:
            await self._disconnect()
        client = PySolarmanV5Async(
            self._config.host,
            self._config.logger_serial,
            port=self._config.port,
            mb_slave_id=self._config.unit,
            socket_timeout=self._config.timeout_s,
            auto_reconnect=False,
            logger=logging.getLogger("ongrid.modbus.solarman"),
        )
        try:
            await client.connect()
        except NoSocketAvailableError as exc:
            raise LinkConnectionError(self.endpoint, f"cannot connect: {exc.__cause__ or exc}") from None
        self._client = client
        self._connected()

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.disconnect()

    async def _exchange(self, unit: int, function: int, payload: bytes) -> bytes:
        if self._client is None:
            raise LinkConnectionError(self.endpoint, "not connected")
        request = rtu.frame(unit, function, payload)
        try:
            answer = await self._client.send_raw_modbus_frame(request)
        except NoSocketAvailableError as exc:
            raise LinkConnectionError(self.endpoint, f"connection lost: {exc}") from None
        except TimeoutError:
            raise LinkTimeout(self.endpoint, f"function 0x{function:02X}: no answer") from None
        except V5FrameError as exc:
            raise LinkFramingError(self.endpoint, f"bad V5 frame: {exc}") from None
        except OSError as exc:
            raise LinkConnectionError(self.endpoint, f"socket error: {exc}") from None
        return rtu.parse_response(self.endpoint, bytes(answer), unit, function)

    async def _read(self, function: int, address: int, count: int, unit: int) -> list[int]:
        data = await self._exchange(unit, function, address.to_bytes(2, "big") + count.to_bytes(2, "big"))
        if data[0] != 2 * count:
            raise LinkFramingError(self.endpoint, f"byte count {data[0]} for {count} registers")
        return [int.from_bytes(data[1 + 2 * i : 3 + 2 * i], "big") for i in range(count)]

    async def _write(self, address: int, values: list[int], unit: int, function: int) -> None:
        if function == 6:
            payload = address.to_bytes(2, "big") + values[0].to_bytes(2, "big")
        else:
            payload = address.to_bytes(2, "big") + len(values).to_bytes(2, "big") + bytes((2 * len(values),))
            payload += b"".join(v.to_bytes(2, "big") for v in values)
        await self._exchange(unit, function, payload)

    async def _raw(self, request: ModbusPDU, unit: int) -> ModbusPDU:
        data = await self._exchange(unit, request.function_code, request.encode())
        response_class = self._responses.get(request.function_code)
        if response_class is None:
            raise LinkFramingError(self.endpoint, f"no response decoder for 0x{request.function_code:02X}")
        response = response_class()
        try:
            response.decode(data)
        except (ValueError, IndexError) as exc:
            raise LinkFramingError(self.endpoint, f"cannot decode response {data.hex(' ')}: {exc}") from None
        response.dev_id = unit
        return response


# ---------------------------------------------------------------------- construction and registry


def endpoint_key(transport: LinkTransport) -> tuple[str, ...]:
    """What identifies the physical endpoint: devices sharing it share one Link."""
    if isinstance(transport, ModbusTcp):
        return ("modbus_tcp", transport.host, str(transport.port))
    if isinstance(transport, RtuOverTcp):
        return ("rtu_over_tcp", transport.host, str(transport.port))
    if isinstance(transport, ModbusRtu):
        return ("modbus_rtu", transport.device)
    if isinstance(transport, SolarmanV5):
        return ("solarman_v5", transport.host, str(transport.port), str(transport.logger_serial))
    raise TypeError(f"{type(transport).__name__} is not a Modbus transport")


def _tcp_link(t: ModbusTcp | RtuOverTcp, scheme: str, framer: FramerType) -> Link:
    """Modbus over TCP: MBAP framing (``modbus_tcp``) or RTU frames in the stream (``rtu_over_tcp``)."""
    return PymodbusLink(
        f"{scheme}://{t.host}:{t.port}",
        lambda **kw: AsyncModbusTcpClient(
            t.host, port=t.port, framer=framer, timeout=t.timeout_s, retries=0, reconnect_delay=0, **kw
        ),
        timeout_s=t.timeout_s,
        retries=t.retries,
    )


def build_link(transport: LinkTransport) -> Link:
    """A new, unshared Link for ``transport`` (tests; bridges use ``open_link``)."""
    t = transport
    if isinstance(t, ModbusTcp):
        return _tcp_link(t, "tcp", FramerType.SOCKET)
    if isinstance(t, RtuOverTcp):
        return _tcp_link(t, "rtu+tcp", FramerType.RTU)
    if isinstance(t, ModbusRtu):
        return PymodbusLink(
            f"rtu:{t.device}",
            lambda **kw: AsyncModbusSerialClient(
                port=t.device,
                framer=FramerType.RTU,
                baudrate=t.baudrate,
                parity=t.parity,
                stopbits=t.stopbits,
                bytesize=t.bytesize,
                timeout=t.timeout_s,
                retries=0,
                reconnect_delay=0,
                **kw,
            ),
            timeout_s=t.timeout_s,
            retries=t.retries,
        )
    if isinstance(t, SolarmanV5):
        return SolarmanLink(t)
    raise TypeError(f"{type(t).__name__} is not a Modbus transport")


class LinkRegistry:
    """Links by physical endpoint, so devices on one bus share one lock."""

    def __init__(self) -> None:
        self._links: dict[tuple[str, ...], tuple[Link, LinkTransport]] = {}

    def get(self, transport: LinkTransport) -> Link:
        key = endpoint_key(transport)
        found = self._links.get(key)
        if found is not None:
            link, first = found
            if isinstance(transport, ModbusRtu) and isinstance(first, ModbusRtu):
                mine = (transport.baudrate, transport.parity, transport.stopbits, transport.bytesize)
                theirs = (first.baudrate, first.parity, first.stopbits, first.bytesize)
                if mine != theirs:
                    raise ValueError(
                        f"serial port {transport.device} is configured twice with different settings: "
                        f"{mine} and {theirs}"
                    )
            return link
        link = build_link(transport)
        self._links[key] = (link, transport)
        return link

    async def close_all(self) -> None:
        links, self._links = self._links, {}
        for link, _ in links.values():
            await link.close()


_registries: dict[int, LinkRegistry] = {}


def _registry() -> LinkRegistry:
    # asyncio locks belong to one event loop, so links are shared per loop.
    loop = asyncio.get_running_loop()
    return _registries.setdefault(id(loop), LinkRegistry())


def open_link(transport: LinkTransport) -> Link:
    """The Link for ``transport``'s endpoint in this event loop, shared by every device on it."""
    return _registry().get(transport)


async def close_links() -> None:
    """Close every Link opened in this event loop (service shutdown)."""
    registry = _registries.pop(id(asyncio.get_running_loop()), None)
    if registry is not None:
        await registry.close_all()
