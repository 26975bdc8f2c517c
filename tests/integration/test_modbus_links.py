"""Links against real pymodbus servers over TCP, RTU on a socat pty pair, RTU over TCP and Solarman V5."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pysolarmanv5 import PySolarmanV5Async

from services.inverter_bridge.drivers import SofarPassiveDriver
from services.simulator.servers import (
    ContextRtuHandler,
    MapSource,
    RegisterContext,
    RtuOverTcpForwarder,
    SolarmanEmulator,
    start_server,
)
from shared.config.transports import ModbusRtu, ModbusTcp, RtuOverTcp, SolarmanV5
from shared.modbus import (
    CHARGE_REGISTER,
    Link,
    LinkConnectionError,
    LinkExceptionResponse,
    LinkFramingError,
    LinkTimeout,
    PassiveModeRequest,
    PassiveModeResponse,
    PassiveStatus,
    build_link,
    close_links,
    open_link,
)
from shared.modbus.rtu import check_crc, crc16
from shared.registers import decode, load_map, plan_reads
from tests.support import SOCAT, free_port, pty_pair

SOFAR = load_map("sofar_me3000sp")
SDM = load_map("eastron_sdm120")
VALUES = {
    "running_state": "discharging",
    "battery_power_w": 1230.0,
    "battery_soc_pct": 55,
    "grid_power_w": -470.0,
    "battery_voltage_v": 51.7,
    "pv_energy_total_wh": 12_345_000,
    "fault_2": ("ID20",),
    "serial_number": "SE1ES0000001",
}
METER_VALUES = {"power_w": -812.5, "voltage_v": 239.5, "import_energy_wh": 1_234_500.0}
# Vendor example (ME3000SP passive-mode PDF): charge 1000 W.
CHARGE_1000_W = bytes.fromhex("01 42 01 02 03 E8 D9 47")


class Inverter:
    """Records passive-mode calls the way the simulator's inverter model will receive them."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int, int]] = []

    def __call__(self, unit: int, function: int, register: int, value: int) -> int:
        self.calls.append((unit, function, register, value))
        return PassiveStatus.build(0, battery_full=False).word


def make_context(inverter: Inverter) -> RegisterContext:
    return RegisterContext(
        {1: MapSource(SOFAR, lambda: VALUES), 2: MapSource(SDM, lambda: METER_VALUES)}, custom=inverter
    )


async def passive(link: Link, register: int, value: int, unit: int = 1) -> PassiveStatus:
    """A raw Sofar 0x42 write through the link, as the Sofar driver sends it."""
    return (await link.raw(PassiveModeRequest(register, value), PassiveModeResponse, unit)).passive_status


async def poll(link: Link, regmap, unit: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    values: dict[str, object] = {}
    for block in plan_reads(regmap):
        values.update(
            decode(regmap, block, await link.read(block.function, block.address, block.count, unit))
        )
    return values


def assert_sofar(values: dict[str, object]) -> None:
    for field, expected in VALUES.items():
        assert values[field] == expected, field


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[tuple[str, str]]:
    if SOCAT is None:
        pytest.skip("socat is not installed")
    with pty_pair(tmp_path / "ttyA", tmp_path / "ttyB") as ends:
        yield ends


@pytest.fixture
async def tcp_server() -> AsyncIterator[tuple[int, Inverter, list[bytes]]]:
    inverter, received = Inverter(), []
    port = free_port()

    def trace(sending: bool, data: bytes) -> bytes:
        if not sending:
            received.append(data)
        return data

    served = await start_server(make_context(inverter), "modbus_tcp", port=port, trace_packet=trace)
    yield port, inverter, received
    await served.close()


async def test_tcp_reads_decode_and_passive_mode(tcp_server: tuple[int, Inverter, list[bytes]]) -> None:
    port, inverter, _ = tcp_server
    link = build_link(ModbusTcp(kind="modbus_tcp", host="127.0.0.1", port=port, timeout_s=1, retries=0))
    try:
        assert_sofar(await poll(link, SOFAR, 1))
        meter = await poll(link, SDM, 2)
        assert meter["power_w"] == -812.5 and meter["import_energy_wh"] == 1_234_500.0
        status = await passive(link, CHARGE_REGISTER, 1000)
        assert status.accepted and status.charge_enabled and not status.battery_full
        assert inverter.calls == [(1, 0x42, 0x0102, 1000)]
        await SofarPassiveDriver(link, SOFAR, 1).heartbeat()
        assert inverter.calls[-1] == (1, 0x49, 0x2201, 0x2202)
    finally:
        await link.close()


async def test_exception_code_is_reported_with_its_number(
    tcp_server: tuple[int, Inverter, list[bytes]],
) -> None:
    port, _, _ = tcp_server
    link = build_link(ModbusTcp(kind="modbus_tcp", host="127.0.0.1", port=port, timeout_s=1, retries=0))
    try:
        with pytest.raises(LinkExceptionResponse) as caught:
            await link.read(3, 0x0246, 2, unit=1)  # past the real-time block: forbidden on an ME3000SP
        assert caught.value.code == 2 and "illegal data address" in str(caught.value)
        assert_sofar(await poll(link, SOFAR, 1))  # the link is still usable afterwards
    finally:
        await link.close()


async def test_refused_connection_and_silent_server() -> None:
    refused = build_link(
        ModbusTcp(kind="modbus_tcp", host="127.0.0.1", port=free_port(), timeout_s=0.5, retries=1)
    )
    with pytest.raises(LinkConnectionError, match="cannot connect"):
        await refused.read(3, 0x0200, 1, unit=1)

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # reads the request and never answers
        await asyncio.sleep(10)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent = build_link(ModbusTcp(kind="modbus_tcp", host="127.0.0.1", port=port, timeout_s=0.3, retries=0))
    try:
        with pytest.raises(LinkTimeout, match="no answer"):
            await silent.read(3, 0x0200, 1, unit=1)
    finally:
        await silent.close()
        server.close()


async def test_rtu_over_tcp_exact_vendor_bytes_and_crc_errors() -> None:
    inverter, port = Inverter(), free_port()
    corrupt = {"on": False}
    received: list[bytes] = []

    def trace(sending: bool, data: bytes) -> bytes:
        if not sending:
            received.append(data)
        elif corrupt["on"]:
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        return data

    served = await start_server(make_context(inverter), "rtu_over_tcp", port=port, trace_packet=trace)
    try:
        # 1. the vendor's own request bytes, sent by hand, get a 7-byte answer with a valid CRC
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(CHARGE_1000_W)
        answer = await asyncio.wait_for(reader.readexactly(7), 3)
        writer.close()
        assert answer[:3] == bytes.fromhex("01 42 02") and check_crc(answer)
        assert PassiveStatus(int.from_bytes(answer[3:5], "big")).accepted
        # 2. our Link emits exactly the vendor's bytes for the same command
        received.clear()
        link = build_link(
            RtuOverTcp(kind="rtu_over_tcp", host="127.0.0.1", port=port, timeout_s=0.5, retries=0)
        )
        assert (await passive(link, CHARGE_REGISTER, 1000)).accepted
        assert b"".join(received) == CHARGE_1000_W
        assert_sofar(await poll(link, SOFAR, 1))
        # 3. a corrupted CRC is a framing error, not a timeout or a garbage value
        corrupt["on"] = True
        with pytest.raises(LinkFramingError, match="no valid frame"):
            await link.read(3, 0x0200, 4, unit=1)
        corrupt["on"] = False
        assert_sofar(await poll(link, SOFAR, 1))
        await link.close()
    finally:
        await served.close()


async def test_rtu_on_a_pty_with_two_devices_sharing_the_bus(ptys: tuple[str, str]) -> None:
    server_side, client_side = ptys
    inverter = Inverter()
    served = await start_server(make_context(inverter), "modbus_rtu", device=server_side, baudrate=9600)
    try:
        inv_cfg = ModbusRtu(kind="modbus_rtu", device=client_side, unit=1, timeout_s=1, retries=1)
        meter_cfg = ModbusRtu(kind="modbus_rtu", device=client_side, unit=2, timeout_s=1, retries=1)
        link = open_link(inv_cfg)
        assert open_link(meter_cfg) is link  # one physical bus, one Link, one lock
        # Concurrent callers on one bus: the lock keeps every request/response pair whole.
        results = await asyncio.gather(
            poll(link, SOFAR, 1),
            poll(link, SDM, 2),
            passive(link, CHARGE_REGISTER, 1000),
            poll(link, SDM, 2),
        )
        assert_sofar(results[0])
        assert results[1]["power_w"] == -812.5 and results[3]["voltage_v"] == 239.5
        assert results[2].accepted and inverter.calls == [(1, 0x42, 0x0102, 1000)]
        with pytest.raises(ValueError, match="configured twice"):
            open_link(ModbusRtu(kind="modbus_rtu", device=client_side, baudrate=2400))
    finally:
        await close_links()
        await served.close()


async def test_vendor_bytes_on_a_pty(ptys: tuple[str, str]) -> None:
    server_side, client_side = ptys
    served = await start_server(make_context(Inverter()), "modbus_rtu", device=server_side, baudrate=9600)
    try:
        fd = await asyncio.to_thread(_pty_exchange, client_side, CHARGE_1000_W, 7)
        assert fd[:3] == bytes.fromhex("01 42 02") and check_crc(fd)
    finally:
        await served.close()


def _pty_exchange(path: str, request: bytes, size: int) -> bytes:
    import os

    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, request)
        data = b""
        deadline = time.monotonic() + 3
        while len(data) < size and time.monotonic() < deadline:
            data += os.read(fd, size - len(data))
        return data
    finally:
        os.close(fd)


async def test_solarman_emulator_with_pysolarmanv5_as_the_independent_client() -> None:
    inverter = Inverter()
    async with SolarmanEmulator(
        ContextRtuHandler(make_context(inverter)), logger_serial=2712345678, port=0
    ) as logger:
        client = PySolarmanV5Async("127.0.0.1", 2712345678, port=logger.port, mb_slave_id=1, socket_timeout=3)
        await client.connect()
        try:
            regs = await client.read_holding_registers(0x020D, 4)
            # 0x020D = -123 (1.23 kW discharge, vendor + charge), 0x020E = 517 (51.7 V), 0x0210 = 55 %
            assert regs == [0x10000 - 123, 517, 0, 55]
            answer = bytes(await client.send_raw_modbus_frame(CHARGE_1000_W))
            assert answer[:3] == bytes.fromhex("01 42 02") and check_crc(answer)
            assert inverter.calls == [(1, 0x42, 0x0102, 1000)]
        finally:
            await client.disconnect()


async def test_solarman_link_survives_a_logger_that_drops_idle_connections() -> None:
    inverter = Inverter()
    async with SolarmanEmulator(
        ContextRtuHandler(make_context(inverter)), logger_serial=42, port=0, idle_timeout_s=0.3
    ) as logger:
        cfg = SolarmanV5(
            kind="solarman_v5", host="127.0.0.1", port=logger.port, logger_serial=42, timeout_s=1, retries=0
        )
        link = build_link(cfg)
        try:
            assert_sofar(await poll(link, SOFAR, 1))
            await asyncio.sleep(0.6)  # the logger hangs up on us meanwhile
            assert logger.dropped >= 1
            assert_sofar(await poll(link, SOFAR, 1))  # retries=0: reconnecting must not cost a failure
            assert link.reconnects >= 1 and link.failures == 0
            assert (await passive(link, CHARGE_REGISTER, 1000)).accepted
            with pytest.raises(LinkExceptionResponse) as caught:
                await link.read(3, 0x0246, 2, unit=1)
            assert caught.value.code == 2
        finally:
            await link.close()


async def test_solarman_emulator_forwarding_to_an_rtu_over_tcp_device() -> None:
    inverter, port = Inverter(), free_port()
    served = await start_server(make_context(inverter), "rtu_over_tcp", port=port)
    forwarder = RtuOverTcpForwarder("127.0.0.1", port)
    try:
        async with SolarmanEmulator(forwarder, logger_serial=7, port=0) as logger:
            link = build_link(
                SolarmanV5(kind="solarman_v5", host="127.0.0.1", port=logger.port, logger_serial=7)
            )
            assert_sofar(await poll(link, SOFAR, 1))
            assert (await passive(link, CHARGE_REGISTER, 1000)).accepted
            await link.close()
    finally:
        await forwarder.close()
        await served.close()


def test_crc_matches_the_vendor_examples() -> None:
    for example in (
        "01 42 01 00 55 55 87 56",
        "01 42 01 01 01 F4 29 EE",
        "01 42 01 02 0B B8 DE BB",
        "01 49 22 01 22 02 1E DD",
        "88 49 22 01 22 02 01 84",
    ):
        frame = bytes.fromhex(example)
        assert crc16(frame[:-2]).to_bytes(2, "little") == frame[-2:], example


async def test_tcp_link_reconnects_after_the_server_restarts() -> None:
    inverter, port = Inverter(), free_port()
    served = await start_server(make_context(inverter), "modbus_tcp", port=port)
    link = build_link(ModbusTcp(kind="modbus_tcp", host="127.0.0.1", port=port, timeout_s=1, retries=1))
    try:
        assert_sofar(await poll(link, SOFAR, 1))
        await served.close()
        with pytest.raises((LinkConnectionError, LinkTimeout)):
            await link.read(3, 0x0200, 1, unit=1)
        served = await start_server(make_context(inverter), "modbus_tcp", port=port)
        assert_sofar(await poll(link, SOFAR, 1))
        assert link.reconnects >= 1
    finally:
        await link.close()
        await served.close()
