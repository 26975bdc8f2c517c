"""An accelerated run starts its simulated day only once every service is online (real Mosquitto)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from services.devtools.fleet_start import NotOnline, service_name, wait_online
from shared.bus import Bus
from shared.config import MqttConfig
from tests.support import MOSQUITTO, Broker, running_broker

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed")
SITE = "start"


@pytest.fixture
def mqtt() -> Iterator[MqttConfig]:
    with running_broker() as broker:
        yield _config(broker)


def _config(broker: Broker) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port)


def test_service_names_are_the_announced_ones() -> None:
    assert service_name("services.inverter_bridge") == "inverter-bridge"
    assert service_name("dispatcher") == "dispatcher"


async def test_waits_for_a_service_that_comes_online_late(mqtt: MqttConfig) -> None:
    seen: list[str] = []
    async with Bus(mqtt, site=SITE, service="meter-bridge") as early:
        await early.wait_connected(30)
        waiting = asyncio.create_task(
            wait_online(mqtt, SITE, ["meter-bridge", "dispatcher"], timeout=120, report=lambda n, _s: seen.append(n))
        )
        await asyncio.sleep(1.0)
        assert not waiting.done(), "released before the dispatcher was online"
        async with Bus(mqtt, site=SITE, service="dispatcher") as late:
            await late.wait_connected(30)
            await asyncio.wait_for(waiting, 120)
    assert seen == ["meter-bridge", "dispatcher"]


async def test_names_the_service_that_never_came_online(mqtt: MqttConfig) -> None:
    async with Bus(mqtt, site=SITE, service="recorder") as bus:
        await bus.wait_connected(30)
        with pytest.raises(NotOnline) as failed:
            await wait_online(mqtt, SITE, ["recorder", "dispatcher"], timeout=2)
    assert failed.value.missing == ["dispatcher"]
    assert "dispatcher never came online within 2 s" in str(failed.value)
    assert "ongrid/start/service/dispatcher/availability" in str(failed.value)


async def test_a_process_that_exited_ends_the_wait_at_once(mqtt: MqttConfig) -> None:
    with pytest.raises(NotOnline) as failed:
        await wait_online(mqtt, SITE, ["dispatcher"], timeout=120, dead=lambda: {"dispatcher": 1})
    assert "dispatcher (status 1) exited before the simulated day started" in str(failed.value)
    assert failed.value.missing == ["dispatcher"]
