"""The Sofar control driver on a real Modbus server (RTU framed over TCP): the vendor's bytes on the
wire, one wire write per setpoint even when the answer never comes, and the interface it fills.

Reference frames are the examples printed in Sofar's "ME3000SP Passive mode protocol" PDF (request
bytes with their CRC), not produced by this project's encoder.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.inverter_bridge.drivers import DriverProblem, InverterDriver, SofarPassiveDriver, driver_for
from services.inverter_bridge.limits import CHARGE, DISCHARGE, STANDBY, STANDBY_SETPOINT, Setpoint
from services.simulator.servers import MapSource, RegisterContext, start_server
from shared.config.transports import RtuOverTcp
from shared.messages import CommandMode
from shared.modbus import Link, LinkTimeout, PassiveStatus, build_link
from shared.registers import load_map
from tests.support import free_port

SOFAR = load_map("sofar_me3000sp")
# Vendor PDF examples: standby, discharge 500 W, charge 3000 W, heartbeat.
STANDBY_FRAME = bytes.fromhex("01 42 01 00 55 55 87 56")
DISCHARGE_500_FRAME = bytes.fromhex("01 42 01 01 01 F4 29 EE")
CHARGE_3000_FRAME = bytes.fromhex("01 42 01 02 0B B8 DE BB")
HEARTBEAT_FRAME = bytes.fromhex("01 49 22 01 22 02 1E DD")


class Inverter:
    """Answers 0x42 with a status word; ``refuse`` makes it answer "invalid mode"."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []
        self.refuse = False

    def __call__(self, unit: int, function: int, register: int, value: int) -> int:
        self.calls.append((function, register, value))
        return PassiveStatus.build(1 if self.refuse else 0, battery_full=self.refuse).word


@pytest.fixture
async def served() -> AsyncIterator[tuple[Link, Inverter, list[bytes]]]:
    inverter, received, port = Inverter(), [], free_port()

    def trace(sending: bool, data: bytes) -> bytes:
        if not sending:
            received.append(data)
        return data

    context = RegisterContext({1: MapSource(SOFAR, lambda: {})}, custom=inverter)
    server = await start_server(context, "rtu_over_tcp", port=port, trace_packet=trace)
    link = build_link(RtuOverTcp(kind="rtu_over_tcp", host="127.0.0.1", port=port, timeout_s=1, retries=2))
    try:
        yield link, inverter, received
    finally:
        await link.close()
        await server.close()


async def test_setpoints_are_the_vendors_frames(served: tuple[Link, Inverter, list[bytes]]) -> None:
    link, inverter, received = served
    driver: InverterDriver = driver_for(SOFAR, link, 1)
    for setpoint, frame in (
        (STANDBY_SETPOINT, STANDBY_FRAME),
        (Setpoint(CommandMode.DISCHARGE, DISCHARGE, 500), DISCHARGE_500_FRAME),
        (Setpoint(CommandMode.CHARGE, CHARGE, 3000), CHARGE_3000_FRAME),
    ):
        received.clear()
        assert (await driver.set_battery(setpoint)).accepted
        assert b"".join(received) == frame, setpoint
    received.clear()
    await driver.heartbeat()
    assert b"".join(received) == HEARTBEAT_FRAME
    # Self-use: auto (0x0103) with 0 W, the grid held at zero by the inverter's own CT.
    assert (await driver.self_use()).accepted
    assert inverter.calls[-1] == (0x42, 0x0103, 0)
    inverter.refuse = True
    result = await driver.set_battery(Setpoint(CommandMode.CHARGE, CHARGE, 3000))
    assert not result.accepted and result.reason == "invalid mode (battery full)"
    with pytest.raises(ValueError, match="not a passive-mode setpoint"):
        await driver.set_battery(Setpoint(CommandMode.SELF_USE, STANDBY, 0))


async def test_an_unanswered_setpoint_goes_on_the_wire_once_a_heartbeat_is_retried() -> None:
    """The link has retries=2: a counted write must still reach the inverter only once."""
    requests: list[bytes] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(64):
            requests.append(data)  # never answers

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = build_link(RtuOverTcp(kind="rtu_over_tcp", host="127.0.0.1", port=port, timeout_s=0.3, retries=2))
    driver = SofarPassiveDriver(link, SOFAR, 1)
    try:
        with pytest.raises(LinkTimeout):
            await driver.set_battery(Setpoint(CommandMode.CHARGE, CHARGE, 3000))
        assert b"".join(requests) == CHARGE_3000_FRAME
        requests.clear()
        with pytest.raises(LinkTimeout):
            await driver.heartbeat()
        assert b"".join(requests) == HEARTBEAT_FRAME * 3
    finally:
        await link.close()
        server.close()


def test_a_map_without_passive_mode_has_no_driver() -> None:
    link = build_link(RtuOverTcp(kind="rtu_over_tcp", host="127.0.0.1", port=free_port()))
    with pytest.raises(DriverProblem, match="no control driver for map eastron_sdm120"):
        driver_for(load_map("eastron_sdm120"), link, 1)
    with pytest.raises(DriverProblem, match="has no passive-mode points"):
        SofarPassiveDriver(link, load_map("eastron_sdm120"), 1)
