"""The bus client against the simulator's BMS server over a real pty and a real TCP socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.simulator.devices.pylontech import PtyEndpoint, PylontechFaults, TcpEndpoint, serve
from services.simulator.physics.battery import Battery, BatteryParams
from shared.pylontech import PylontechDecodeError, TransportError
from shared.pylontech.client import Endpoint, PylontechClient


@contextlib.asynccontextmanager
async def serving(battery: Battery, endpoint: Any, faults: PylontechFaults) -> AsyncIterator[str]:
    where: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(battery, endpoint, baudrate=115200, faults=faults, ready=where.set_result)
    )
    try:
        yield await asyncio.wait_for(where, 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_concurrent_requests_share_the_bus_without_interleaving(tmp_path: Path) -> None:
    battery = Battery(BatteryParams(modules=4))
    truth = battery.snapshot()
    async with serving(battery, PtyEndpoint(str(tmp_path / "bms")), PylontechFaults()) as device:
        client = PylontechClient.for_endpoint(Endpoint.parse(device, 115200), timeout_s=1.0, retries=0)
        try:
            serials = await asyncio.gather(*(client.serial_number(adr) for adr in (2, 3, 4, 5) * 3))
        finally:
            await client.close()
    assert [s.serial for s in serials] == [m.serial for m in truth.modules] * 3
    assert client.failures == 0


async def test_faults_surface_as_codec_and_transport_errors_and_the_link_recovers() -> None:
    battery = Battery(BatteryParams(modules=1))
    faults = PylontechFaults()
    async with serving(battery, TcpEndpoint("127.0.0.1", 0), faults) as address:
        client = PylontechClient.for_endpoint(Endpoint.parse(f"socket://{address}"), timeout_s=0.4, retries=1)
        try:
            assert (await client.analog(2)).voltage_v == pytest.approx(
                battery.snapshot().modules[0].voltage_v
            )
            faults.bad_checksum = True
            with pytest.raises(PylontechDecodeError) as caught:
                await client.analog(2)
            assert caught.value.field == "CHKSUM"
            faults.bad_checksum, faults.garbage = False, True
            with pytest.raises(TransportError, match="no answer from address 2 to 0x42"):
                await client.analog(2)
            faults.garbage = False
            assert (await client.charge_discharge(2)).charge_enabled
            assert client.noise_bytes > 0
        finally:
            await client.close()


async def test_unreachable_tcp_endpoint_is_a_transport_error() -> None:
    from tests.support import free_port

    client = PylontechClient.for_endpoint(
        Endpoint(host="127.0.0.1", port=free_port()), timeout_s=0.5, retries=0
    )
    with pytest.raises(TransportError, match="cannot connect"):
        await client.analog(2)
