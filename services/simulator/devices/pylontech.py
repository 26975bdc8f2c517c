"""The simulated Pylontech stack on the wire: a BMS that answers the RS485 protocol.

It reads the battery through ``BatteryView.snapshot()`` (services/simulator/physics/battery.py,
engineer B's model) and answers 0x4F, 0x51, 0x42 (one module or ``FF``), 0x44, 0x47, 0x92 and
0x93 for every module at ``first_address .. first_address + N - 1``, as the master module of a
real stack does. Requests to other addresses get no answer, as on a real bus.

Usage::

    await serve(battery, PtyEndpoint("var/run/bms"), baudrate=9600)       # creates the pty
    await serve(battery, SerialEndpoint("/tmp/ttyA"), baudrate=115200)    # one end of socat
    await serve(battery, TcpEndpoint("127.0.0.1", 4196))                  # like ser2net

``serve`` runs until cancelled. The pure part is ``answer(request, pack, ...)``.

Sign: the view's current is discharge ``+`` (project convention); on the wire Pylontech current
is charge ``+``, so the server flips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import random
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.simulator.physics.battery import BatteryView, ModuleView, PackView
from shared.logs import get_logger
from shared.pylontech import (
    ALL_MODULES,
    AlarmLevel,
    AlarmResponse,
    AnalogResponse,
    ChargeDischarge,
    Cid2,
    Frame,
    ManufacturerInfo,
    ModuleAlarms,
    ModuleAnalog,
    PylontechDecodeError,
    Rtn,
    SerialNumber,
    SystemParameters,
    c_to_dk,
    command_byte,
    decode_frame,
)
from shared.pylontech.payloads import (
    CHARGE_ENABLE,
    CHARGE_IMMEDIATELY_1,
    DISCHARGE_ENABLE,
    FULL_CHARGE_REQUEST,
)
from shared.pylontech.stream import ByteStream, FdStream, FrameScanner, TcpStream, open_serial

log = get_logger("simulator.pylontech")

PROTOCOL_VERSION = 0x20


@dataclass
class PylontechFaults:
    """Switches a test flips while the server runs.

    ``silent``: answer nothing. ``bad_checksum``: answer with a corrupted CHKSUM. ``garbage``:
    answer with random non-frame bytes. ``noise``: bytes sent before every answer (line noise).
    ``out_of_range``: report physically impossible values (cells at 65 V, -273 degC).
    ``silent_modules``: module indexes that do not answer.
    ``negative_discharge_limit``: send the discharge current limits (0x92, 0x47) as negative
    numbers, as some Pylontech firmware does (python-pylontech's README, a real pack's 0x47:
    ``DischargeCurrentLimit = -10.0``); not a fault, a vendor convention the bridge must accept.
    """

    silent: bool = False
    bad_checksum: bool = False
    garbage: bool = False
    noise: bytes = b""
    out_of_range: bool = False
    silent_modules: set[int] = field(default_factory=set)
    negative_discharge_limit: bool = False


@dataclass(frozen=True)
class StackIdentity:
    """What 0x51 says: the real stack answers with the master module's name on every address."""

    device_name: str | None = None  # None: derived from the first module's model
    software_version: tuple[int, int] = (1, 6)
    manufacturer: str = "PYLON"


# The US2000's own limits as 0x47 reports them (simulated values, plausible for LFP 15S).
SYSTEM_PARAMETERS = SystemParameters(
    cell_high_mv=3650,
    cell_low_mv=3050,
    cell_under_mv=2900,
    charge_high_temp_dk=c_to_dk(50.0),
    charge_low_temp_dk=c_to_dk(0.0),
    charge_current_limit_da=500,
    module_high_mv=54000,
    module_low_mv=46500,
    module_under_mv=45000,
    discharge_high_temp_dk=c_to_dk(50.0),
    discharge_low_temp_dk=c_to_dk(-10.0),
    discharge_current_limit_da=500,
)


@dataclass(frozen=True)
class PtyEndpoint:
    """A pty the server creates; ``link`` becomes a symlink to its slave side for clients to open."""

    link: str


@dataclass(frozen=True)
class SerialEndpoint:
    """An existing serial device, e.g. one end of ``socat pty,raw,echo=0 pty,raw,echo=0``."""

    device: str


@dataclass(frozen=True)
class TcpEndpoint:
    host: str
    port: int


Endpoint = PtyEndpoint | SerialEndpoint | TcpEndpoint


# --- pure: one request in, one answer out -----------------------------------------------------


def module_analog(module: ModuleView, *, out_of_range: bool = False) -> ModuleAnalog:
    cells = tuple(round(v * 1000) for v in module.cell_voltages_v)
    temps = tuple(c_to_dk(t) for t in (module.bms_temp_c, *module.cell_temps_c))
    if out_of_range:
        cells = (65000,) * len(cells)
        temps = (0,) * len(temps)
    remaining, total = round(module.remaining_ah * 1000), round(module.full_ah * 1000)
    return ModuleAnalog(
        cell_mv=cells,
        temps_dk=temps,
        current_da=round(-module.current_a * 10),
        voltage_mv=round(module.voltage_v * 1000),
        remaining_mah=remaining,
        total_mah=total,
        cycles=module.cycles,
        udi=ModuleAnalog.udi_for(remaining, total),
    )


def _level(value: float, low: float, high: float) -> int:
    if value < low:
        return AlarmLevel.BELOW
    if value > high:
        return AlarmLevel.ABOVE
    return AlarmLevel.NORMAL


def module_alarms(module: ModuleView, params: SystemParameters = SYSTEM_PARAMETERS) -> ModuleAlarms:
    """Alarm levels as the BMS derives them from its own limits (0x47)."""
    cells = tuple(_level(v * 1000, params.cell_low_mv, params.cell_high_mv) for v in module.cell_voltages_v)
    low_c, high_c = params.discharge_temp_range_c
    temps = tuple(_level(t, low_c, high_c) for t in (module.bms_temp_c, *module.cell_temps_c))
    volts = _level(module.voltage_v * 1000, params.module_low_mv, params.module_high_mv)
    # status2: bit0 pre-MOSFET, bit1 charge MOSFET, bit2 discharge MOSFET, bit3 using battery power
    status2 = 0b1000 | (0b10 if module.charge_enabled else 0) | (0b100 if module.discharge_enabled else 0)
    status3 = 0b1000 if module.soc_pct >= 99.5 else 0  # bit3: fully charged
    return ModuleAlarms(cells=cells, temps=temps, module_voltage=volts, status=(0, status2, status3, 0, 0))


def system_parameters(*, negative_discharge_limit: bool = False) -> SystemParameters:
    if not negative_discharge_limit:
        return SYSTEM_PARAMETERS
    return dataclasses.replace(
        SYSTEM_PARAMETERS, discharge_current_limit_da=-abs(SYSTEM_PARAMETERS.discharge_current_limit_da)
    )


def charge_discharge(module: ModuleView, command: int, *, negative_discharge_limit: bool = False) -> ChargeDischarge:
    discharge_da = round(module.discharge_current_limit_a * 10)
    status = (
        (CHARGE_ENABLE if module.charge_enabled else 0)
        | (DISCHARGE_ENABLE if module.discharge_enabled else 0)
        | (CHARGE_IMMEDIATELY_1 if module.charge_immediately else 0)
        | (FULL_CHARGE_REQUEST if module.full_charge_request else 0)
    )
    return ChargeDischarge(
        command=command,
        charge_voltage_mv=round(module.charge_voltage_limit_v * 1000),
        discharge_voltage_mv=round(module.discharge_voltage_limit_v * 1000),
        charge_current_da=round(module.charge_current_limit_a * 10),
        discharge_current_da=-discharge_da if negative_discharge_limit else discharge_da,
        status=status,
    )


def answer(
    request: Frame,
    pack: PackView,
    *,
    first_address: int = 2,
    identity: StackIdentity = StackIdentity(),
    faults: PylontechFaults | None = None,
) -> Frame | None:
    """The answer of the stack to ``request``, or None when nobody on the bus would answer."""
    faults = faults or PylontechFaults()
    modules = pack.modules
    addresses = range(first_address, first_address + len(modules))
    # Address 0 is what python-pylontech uses for 0x4F/0x51; the master answers it.
    if request.adr != 0 and request.adr not in addresses:
        return None

    def reply(info: bytes = b"", rtn: int = Rtn.NORMAL) -> Frame:
        return Frame(adr=request.adr, cid2=rtn, info=info)

    cid2 = request.cid2
    if cid2 == Cid2.PROTOCOL_VERSION:
        return Frame(adr=request.adr, cid2=Rtn.NORMAL, ver=PROTOCOL_VERSION)
    if cid2 == Cid2.MANUFACTURER_INFO:
        name = identity.device_name or modules[0].model.split("-")[0][:10]
        return reply(ManufacturerInfo(name, identity.software_version, identity.manufacturer).encode())
    if cid2 == Cid2.SYSTEM_PARAMETERS:
        return reply(system_parameters(negative_discharge_limit=faults.negative_discharge_limit).encode())
    if cid2 not in (Cid2.ANALOG, Cid2.ALARM, Cid2.CHARGE_DISCHARGE, Cid2.SERIAL_NUMBER):
        return reply(rtn=Rtn.CID2_INVALID)

    command = command_byte(request)
    if command == ALL_MODULES and cid2 in (Cid2.ANALOG, Cid2.ALARM):
        live = tuple(m for m in modules if m.index not in faults.silent_modules)
        if cid2 == Cid2.ANALOG:
            analogs = tuple(module_analog(m, out_of_range=faults.out_of_range) for m in live)
            return reply(AnalogResponse(analogs, len(analogs), all_modules=True).encode())
        alarms = tuple(module_alarms(m) for m in live)
        return reply(AlarmResponse(alarms, len(alarms), all_modules=True).encode())
    if command not in addresses:
        return reply(rtn=Rtn.ADR_ERROR)
    module = modules[command - first_address]
    if module.index in faults.silent_modules:
        return None
    if cid2 == Cid2.ANALOG:
        analog = module_analog(module, out_of_range=faults.out_of_range)
        return reply(AnalogResponse((analog,), command).encode())
    if cid2 == Cid2.ALARM:
        return reply(AlarmResponse((module_alarms(module),), command).encode())
    if cid2 == Cid2.CHARGE_DISCHARGE:
        return reply(
            charge_discharge(module, command, negative_discharge_limit=faults.negative_discharge_limit).encode()
        )
    return reply(SerialNumber(command, module.serial[:16]).encode())


def wire_bytes(frame: Frame, faults: PylontechFaults, rng: random.Random) -> bytes:
    """The bytes put on the line for ``frame``, after the fault switches."""
    if faults.garbage:
        return bytes(rng.choice(b"0123456789ABCDEF\x00\xff") for _ in range(rng.randint(5, 40))) + b"\r"
    raw = frame.encode()
    if faults.bad_checksum:
        raw = raw[:-2] + (b"0" if raw[-2:-1] != b"0" else b"1") + b"\r"
    return faults.noise + raw


def transmit_time_s(n_bytes: int, baudrate: int) -> float:
    """Time a UART needs for ``n_bytes`` at 8N1 (10 bits a byte)."""
    return n_bytes * 10.0 / baudrate


# --- I/O ----------------------------------------------------------------------------------------


async def _session(
    stream: ByteStream,
    view: BatteryView,
    *,
    first_address: int,
    baudrate: int,
    identity: StackIdentity,
    faults: PylontechFaults,
    pace: bool,
) -> None:
    scanner = FrameScanner()
    rng = random.Random(0x5EED)
    while True:
        for raw in scanner.feed(await stream.read()):
            try:
                request = decode_frame(raw)
            except PylontechDecodeError as exc:
                # A real BMS ignores a frame it cannot read; the master times out and retries.
                log.debug("ignoring unreadable request: %s", exc, extra={"device": stream.name})
                continue
            if faults.silent:
                continue
            pack = view.snapshot()
            reply = answer(request, pack, first_address=first_address, identity=identity, faults=faults)
            if reply is None:
                continue
            data = wire_bytes(reply, faults, rng)
            if pace:
                await asyncio.sleep(transmit_time_s(len(data), baudrate))
            await stream.write(data)


def _open_pty(link: str) -> FdStream:
    master, slave = os.openpty()
    # Raw, no echo: clients expect a clean 8-bit line, as on a real UART.
    tty.setraw(slave)
    slave_name = os.ttyname(slave)
    path = Path(link)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    path.symlink_to(slave_name)

    def cleanup() -> None:
        with contextlib.suppress(OSError):
            path.unlink()
        # Keeping our own slave fd open until now stops the master reading EIO between clients.
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    return FdStream(master, f"pty {link} -> {slave_name}", on_close=cleanup)


async def serve(
    view: BatteryView,
    endpoint: Endpoint,
    *,
    baudrate: int = 9600,
    first_address: int = 2,
    identity: StackIdentity = StackIdentity(),
    faults: PylontechFaults | None = None,
    pace: bool = True,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Answer the Pylontech protocol on ``endpoint`` until cancelled.

    ``baudrate``: 9600 or 115200 as on the battery's DIP switches; with ``pace`` each answer
    takes the time a UART at that rate would need. ``faults`` may be changed while serving.
    ``ready`` is called with the endpoint's address (the pty path, ``host:port``) once clients
    may connect.
    """
    faults = faults if faults is not None else PylontechFaults()
    session = functools.partial(
        _session,
        view=view,
        first_address=first_address,
        baudrate=baudrate,
        identity=identity,
        faults=faults,
        pace=pace,
    )
    if isinstance(endpoint, TcpEndpoint):

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stream = TcpStream(reader, writer, f"tcp client {writer.get_extra_info('peername')}")
            try:
                await session(stream)
            except Exception as exc:  # a client that goes away ends its own session only
                log.info("BMS client session ended: %s", exc)
            finally:
                await stream.close()

        server = await asyncio.start_server(client, endpoint.host, endpoint.port)
        port = server.sockets[0].getsockname()[1]
        if ready:
            ready(f"{endpoint.host}:{port}")
        async with server:
            await server.serve_forever()
        return

    if isinstance(endpoint, PtyEndpoint):
        stream: ByteStream = _open_pty(endpoint.link)
        where = endpoint.link
    else:
        stream = await open_serial(endpoint.device, baudrate)
        where = endpoint.device
    if ready:
        ready(where)
    try:
        await session(stream)
    finally:
        await stream.close()
