"""Regression (issue 8, found by tests/faults/test_recorder_faults.py): a persistent session's
queued messages arrive as soon as the broker accepts the connection, before the service runner
has run the service that subscribes its handler. The bus used to drop them, so everything
published while the recorder was down was lost despite the persistent session."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import topics
from shared.bus import READ_AHEAD_MAX, Bus
from shared.config import MqttConfig
from shared.messages import MeterRole, MeterState
from tests.support import Broker


def reading(i: int) -> MeterState:
    return MeterState(
        ts=datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=i),
        device="grid",
        model="eastron_sdm120",
        role=MeterRole.GRID,
        power_w=float(i),
        voltage_v=240.0,
        current_a=0.1,
        frequency_hz=50.0,
        import_energy_wh=0.0,
        export_energy_wh=0.0,
    )


async def test_messages_queued_for_a_persistent_session_reach_a_handler_subscribed_after_connect(
    mosquitto: Broker,
) -> None:
    mqtt = MqttConfig(host=mosquitto.host, port=mosquitto.port, reconnect_min_s=0.1, reconnect_max_s=0.5)
    site = "t" + uuid.uuid4().hex[:10]
    client_id = f"persistent-{site}"
    pattern = topics.everything(site)

    async def ignore(_topic: str, _message: MeterState) -> None:
        return None

    def recorder_bus() -> Bus:
        return Bus(
            mqtt, site=site, service="recorder", client_id=client_id, persistent_session=True, session_expiry_s=600
        )

    # First life: subscribe, so the broker keeps the subscription in the session.
    async with recorder_bus() as first:
        first.subscribe(pattern, MeterState, ignore)
        await first.subscribed(30)
    async with Bus(mqtt, site=site, service="publisher", announce=False) as publisher:
        await publisher.wait_connected(30)
        for i in range(5):
            assert await publisher.publish(topics.meter_state(site, "grid"), reading(i), retain=False)

    # Second life: connected (the broker delivers the queue now), then the handler subscribes.
    got: list[float] = []

    async def keep(_topic: str, message: MeterState) -> None:
        got.append(message.power_w)

    async with recorder_bus() as second:
        await second.wait_connected(30)
        await asyncio.sleep(0.5)  # the queued messages have arrived before anyone asked for them
        second.subscribe(pattern, MeterState, keep)
        deadline = asyncio.get_running_loop().time() + 60  # a bound on a busy machine, not a pace
        while len(got) < 5 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
    assert sorted(got) == [0.0, 1.0, 2.0, 3.0, 4.0]


async def test_a_persistent_session_acknowledges_only_what_its_handler_has_taken(mosquitto: Broker) -> None:
    # Regression (issue 8, tests/faults/test_recorder_faults.py lost a point now and then): paho
    # acknowledged QoS 1 messages on receipt, so what waited in aiomqtt's queue when the recorder
    # was SIGKILLed was gone for good. Here the first life dies while its handler holds message 0
    # and messages 1-2 wait behind it: none of them was acknowledged, so all come back.
    mqtt = MqttConfig(host=mosquitto.host, port=mosquitto.port, reconnect_min_s=0.1, reconnect_max_s=0.5)
    site = "t" + uuid.uuid4().hex[:10]
    pattern = topics.everything(site)

    def recorder_bus() -> Bus:
        return Bus(
            mqtt,
            site=site,
            service="recorder",
            client_id=f"acks-{site}",
            persistent_session=True,
            session_expiry_s=600,
            announce=False,
        )

    holding = asyncio.Event()

    async def stuck(_topic: str, _message: MeterState) -> None:
        holding.set()
        await asyncio.Event().wait()  # never returns: the process dies here

    first = recorder_bus()
    await first.__aenter__()
    first.subscribe(pattern, MeterState, stuck)
    await first.subscribed(30)
    async with Bus(mqtt, site=site, service="publisher", announce=False) as publisher:
        await publisher.wait_connected(30)
        for i in range(3):
            assert await publisher.publish(topics.meter_state(site, "grid"), reading(i), retain=False)
        await asyncio.wait_for(holding.wait(), 5)
        await asyncio.sleep(0.3)  # messages 1 and 2 have reached the client and wait behind 0
    await first.close()

    got: list[float] = []

    async def keep(_topic: str, message: MeterState) -> None:
        got.append(message.power_w)

    async with recorder_bus() as second:
        second.subscribe(pattern, MeterState, keep)
        await second.subscribed(30)
        deadline = asyncio.get_running_loop().time() + 60  # a bound on a busy machine, not a pace
        while len(set(got)) < 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
    assert sorted(set(got)) == [0.0, 1.0, 2.0]


async def test_a_recorder_away_for_more_than_a_thousand_messages_gets_them_all(mosquitto: Broker) -> None:
    # Regression (issue 8, tests/fuzz/test_topic_fuzz.py): mosquitto queues at most 1000 messages
    # per session by default and drops the rest silently; the broker configs bound by bytes.
    mqtt = MqttConfig(host=mosquitto.host, port=mosquitto.port, reconnect_min_s=0.1, reconnect_max_s=0.5)
    site = "t" + uuid.uuid4().hex[:10]
    pattern = topics.everything(site)

    async def ignore(_topic: str, _message: MeterState) -> None:
        return None

    def recorder_bus() -> Bus:
        return Bus(
            mqtt, site=site, service="recorder", client_id=f"queue-{site}", persistent_session=True,
            session_expiry_s=600, announce=False,
        )

    async with recorder_bus() as first:
        first.subscribe(pattern, MeterState, ignore)
        await first.subscribed(30)
    count = 3000
    async with Bus(mqtt, site=site, service="publisher", announce=False) as publisher:
        await publisher.wait_connected(30)
        topic = topics.meter_state(site, "grid")
        for start in range(0, count, 200):
            sent = await asyncio.gather(
                *(publisher.publish(topic, reading(i), retain=False) for i in range(start, start + 200))
            )
            assert all(sent)
    got: set[float] = set()

    async def keep(_topic: str, message: MeterState) -> None:
        got.add(message.power_w)

    async with recorder_bus() as second:
        second.subscribe(pattern, MeterState, keep)
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
    assert len(got) == count


def test_the_deployed_broker_bounds_session_queues_by_bytes() -> None:
    from pathlib import Path

    conf = (Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    assert "max_queued_messages 10000000" in conf and "max_queued_bytes" in conf


async def test_a_wildcard_reader_does_not_answer_its_own_invalid_payload_events(mosquitto: Broker) -> None:
    # Regression: a wildcard reader whose model cannot read events (here MeterState for everything)
    # rejected its own invalid_payload event, published another about that one, and so on for ever:
    # thousands of events a second that starved the persistent-session test above under load.
    mqtt = MqttConfig(host=mosquitto.host, port=mosquitto.port, reconnect_min_s=0.1, reconnect_max_s=0.5)
    site = "t" + uuid.uuid4().hex[:10]
    seen: list[str] = []

    async def count(topic: str, _payload: bytes) -> None:
        seen.append(topic)

    async def ignore(_topic: str, _message: MeterState) -> None:
        return None

    async with (
        Bus(mqtt, site=site, service="recorder") as reader,
        Bus(mqtt, site=site, service="watcher", announce=False) as watcher,
    ):
        watcher.subscribe(topics.everything(site), None, count)
        reader.subscribe(topics.everything(site), MeterState, ignore)
        await watcher.subscribed(30)
        await reader.subscribed(30)
        await watcher.publish_raw(topics.meter_state(site, "grid"), b"not json", retain=False)
        deadline = asyncio.get_running_loop().time() + 60
        while reader.event_topic not in seen and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)
        settled = seen.count(reader.event_topic)
        await asyncio.sleep(2.0)  # an echo would keep adding events; the bad payload's (and its
        # availability's, which MeterState cannot read either) are all there should be
        assert 1 <= settled <= 3 and seen.count(reader.event_topic) == settled, (settled, len(seen))


async def test_a_persistent_session_far_behind_reads_no_further_ahead_than_its_bound(mosquitto: Broker) -> None:
    """Mosquitto sends a resumed session's whole queue at once, whatever Receive Maximum says; the
    bus must stop reading the socket while READ_AHEAD_MAX messages wait for a slow handler (the
    recorder behind by 120,000 messages held 99,000 of them, 200 MB, before it did)."""
    mqtt = MqttConfig(host=mosquitto.host, port=mosquitto.port, reconnect_min_s=0.1, reconnect_max_s=0.5)
    site = "t" + uuid.uuid4().hex[:10]
    pattern = topics.everything(site)

    def recorder_bus() -> Bus:
        return Bus(
            mqtt, site=site, service="recorder", client_id=f"ahead-{site}", persistent_session=True,
            session_expiry_s=600, announce=False,
        )

    async def ignore(_batch: list[tuple[str, Any, bytes]]) -> None:
        return None

    async with recorder_bus() as first:
        first.subscribe_batch(pattern, MeterState, ignore)
        await first.subscribed(30)
    count = 4 * READ_AHEAD_MAX
    async with Bus(mqtt, site=site, service="publisher", announce=False) as publisher:
        await publisher.wait_connected(30)
        topic = topics.meter_state(site, "grid")
        for start in range(0, count, 500):
            sent = await asyncio.gather(
                *(publisher.publish(topic, reading(i), retain=False) for i in range(start, start + 500))
            )
            assert all(sent)
    got: set[float] = set()
    most_waiting = 0

    async with recorder_bus() as second:

        async def status() -> None:
            # As the recorder's status loop: a QoS 1 publish now and then, from its own task. Its
            # acknowledgement comes behind the queue on the socket; waiting for it must not make
            # the bus read the whole queue into memory (it did: 194-209 MB 60 s behind).
            while True:
                await second.publish(topics.meter_state("x" + site, "grid"), reading(0), qos=1, retain=False)
                await asyncio.sleep(0.2)

        status_task = asyncio.create_task(status())

        async def slow(batch: list[tuple[str, Any, bytes]]) -> None:
            nonlocal most_waiting
            assert second._intake is not None
            most_waiting = max(most_waiting, second._intake.messages)
            got.update(message.power_w for _topic, message, _payload in batch)
            await asyncio.sleep(0.02)  # a database slower than the messages

        second.subscribe_batch(pattern, MeterState, slow)
        deadline = asyncio.get_running_loop().time() + 120
        while len(got) < count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        status_task.cancel()
    assert len(got) == count
    # One socket read (shared.mqttframes.CHUNK, ~1,000 of these messages) may land past the bound.
    assert most_waiting <= READ_AHEAD_MAX + 1_500, most_waiting
