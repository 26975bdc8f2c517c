"""The bus adapter against a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import topics
from shared.bus import Bus
from shared.config import MqttConfig
from shared.contract import model_for_topic
from shared.examples import EXAMPLES
from shared.messages import (
    AckStatus,
    Availability,
    AvailabilityState,
    CommandAck,
    Event,
    InverterCommand,
    Message,
    MeterState,
)
from shared.topics import Kind, Stream
from tests.support import Broker


def site() -> str:
    return "t" + uuid.uuid4().hex[:10]


def mqtt_for(broker: Broker) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5)


class Inbox:
    """Collects what a handler receives, and lets a test wait for it."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()

    async def __call__(self, topic: str, value: Any) -> None:
        self.items.append((topic, value))
        self._changed.set()

    async def wait_for(self, count: int = 1, timeout: float = 30.0) -> list[tuple[str, Any]]:
        async def until() -> None:
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.items


@pytest.fixture
async def pair(mosquitto: Broker) -> AsyncIterator[tuple[str, Bus, Bus]]:
    name = site()
    async with (
        Bus(mqtt_for(mosquitto), site=name, service="sender") as sender,
        Bus(mqtt_for(mosquitto), site=name, service="receiver") as receiver,
    ):
        await sender.wait_connected(30)
        await receiver.wait_connected(30)
        yield name, sender, receiver


def example_topic(site_name: str, model: type[Message]) -> str:
    from shared.contract import channels

    for kind, stream, candidate in channels():
        if candidate is model:
            return topics.topic(site_name, kind, "dev1", stream)
    raise AssertionError(f"{model.__name__} has no channel")


async def test_every_model_round_trips_through_the_broker(pair: tuple[str, Bus, Bus]) -> None:
    name, sender, receiver = pair
    inbox = Inbox()
    receiver.subscribe(topics.everything(name), None, inbox)
    await receiver.subscribed()
    sent = {}
    for model, example in EXAMPLES.items():
        topic = example_topic(name, model)
        sent[topic] = example
        await sender.publish(topic, example)
    await asyncio.wait_for(_until(lambda: set(sent) <= {t for t, _ in inbox.items}), 5)
    by_topic = dict(inbox.items)
    for topic, example in sent.items():
        assert by_topic[topic] == example
        assert type(by_topic[topic]) is type(example)


async def test_state_is_retained_for_late_subscribers(mosquitto: Broker) -> None:
    name = site()
    meter = EXAMPLES[MeterState]
    async with Bus(mqtt_for(mosquitto), site=name, service="bridge") as bridge:
        await bridge.wait_connected(30)
        await bridge.publish(topics.meter_state(name, "grid"), meter)
        async with Bus(mqtt_for(mosquitto), site=name, service="late", announce=False) as late:
            inbox = Inbox()
            late.subscribe(topics.meter_state(name, "grid"), MeterState, inbox)
            assert (await inbox.wait_for(1))[0][1] == meter


async def test_garbage_on_a_command_topic_is_answered_on_ack(pair: tuple[str, Bus, Bus]) -> None:
    name, sender, receiver = pair
    commands, acks = Inbox(), Inbox()
    receiver.subscribe(topics.inverter_command(name, "inv1"), InverterCommand, commands)
    sender.subscribe(topics.inverter_ack(name, "inv1"), CommandAck, acks)
    await receiver.subscribed()
    await sender.subscribed()
    await sender.publish_raw(
        topics.inverter_command(name, "inv1"), json.dumps({"id": "abc", "mode": "warp"}), qos=1
    )
    (_, ack), *_ = await acks.wait_for(1)
    assert ack.status == "error"
    assert ack.command_id == "abc"
    assert "mode" in ack.reason
    assert commands.items == []
    assert receiver.stats.invalid_payloads == 1


async def test_garbage_mode_request_is_answered_on_the_mode_event_topic(pair: tuple[str, Bus, Bus]) -> None:
    from shared.messages import ModeRequest

    name, sender, receiver = pair
    requests, events = Inbox(), Inbox()
    receiver.subscribe(topics.mode_set(name), ModeRequest, requests)
    sender.subscribe(topics.topic(name, Kind.DISPATCHER, topics.MODE_DEVICE, Stream.EVENT), Event, events)
    await receiver.subscribed()
    await sender.subscribed()
    await sender.publish_raw(topics.mode_set(name), b"{not json", qos=1)
    (_, event), *_ = await events.wait_for(1)
    assert event.code == "invalid_payload"
    assert requests.items == []


async def test_a_failing_handler_is_reported_and_the_bus_keeps_going(pair: tuple[str, Bus, Bus]) -> None:
    name, sender, receiver = pair
    calls: list[str] = []

    async def flaky(topic: str, value: MeterState) -> None:
        calls.append(topic)
        if len(calls) == 1:
            raise RuntimeError("boom")

    events = Inbox()
    receiver.subscribe(topics.meter_state(name, "+"), MeterState, flaky)
    sender.subscribe(receiver.event_topic, Event, events)
    await receiver.subscribed()
    await sender.subscribed()
    for device in ("a", "b"):
        await sender.publish(topics.meter_state(name, device), EXAMPLES[MeterState])
    (_, event), *_ = await events.wait_for(1)
    assert event.code == "handler_error" and "boom" in event.message
    for _ in range(50):
        if len(calls) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(calls) == 2


async def test_a_failing_batch_handler_is_reported_and_the_bus_keeps_going(pair: tuple[str, Bus, Bus]) -> None:
    name, sender, receiver = pair
    batches: list[list[str]] = []

    async def flaky(values: list[tuple[str, Any, bytes]]) -> None:
        batches.append([topic for topic, _value, _payload in values])
        if len(batches) == 1:
            raise RuntimeError("batch boom")

    events = Inbox()
    receiver.subscribe_batch(topics.meter_state(name, "+"), MeterState, flaky)
    sender.subscribe(receiver.event_topic, Event, events)
    await receiver.subscribed()
    await sender.subscribed()
    before = receiver.stats.handler_errors
    await sender.publish(topics.meter_state(name, "a"), EXAMPLES[MeterState])
    (_, event), *_ = await events.wait_for(1)
    assert event.code == "handler_error" and event.message == "RuntimeError: batch boom"
    assert event.topic == topics.meter_state(name, "a")  # the batch's first topic
    assert receiver.stats.handler_errors == before + 1
    await sender.publish(topics.meter_state(name, "b"), EXAMPLES[MeterState])
    for _ in range(50):
        if len(batches) == 2:
            break
        await asyncio.sleep(0.05)
    assert batches[1:] == [[topics.meter_state(name, "b")]]


payloads = st.one_of(
    st.binary(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(payloads, min_size=1, max_size=5))
def test_fuzzed_payloads_never_crash_the_subscriber(mosquitto: Broker, data: list[bytes]) -> None:
    async def scenario() -> None:
        name = site()
        async with (
            Bus(mqtt_for(mosquitto), site=name, service="fuzzer", announce=False) as fuzzer,
            Bus(mqtt_for(mosquitto), site=name, service="victim") as victim,
        ):
            await fuzzer.wait_connected(30)
            await victim.wait_connected(30)
            received, events = Inbox(), Inbox()
            victim.subscribe(topics.all_of(name, stream=Stream.STATE), model_for_topic, received)
            fuzzer.subscribe(victim.event_topic, Event, events)
            await victim.subscribed()
            await fuzzer.subscribed()
            for payload in data:
                await fuzzer.publish_raw(topics.meter_state(name, "grid"), payload, qos=1)
            # Every payload is either a valid MeterState or answered with an error event.
            await asyncio.wait_for(_until(lambda: len(received.items) + len(events.items) >= len(data)), 5)
            assert victim.stats.invalid_payloads == len(events.items)
            # And the subscriber still works.
            before = len(received.items)
            await fuzzer.publish(topics.meter_state(name, "grid"), EXAMPLES[MeterState])
            await received.wait_for(before + 1)

    asyncio.run(scenario())


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.02)


async def test_reconnects_resubscribes_and_republishes_after_broker_restart(own_broker: Broker) -> None:
    name = site()
    cfg = mqtt_for(own_broker)
    async with (
        Bus(cfg, site=name, service="bridge") as bridge,
        Bus(cfg, site=name, service="consumer") as consumer,
    ):
        await bridge.wait_connected(30)
        await consumer.wait_connected(30)
        inbox = Inbox()
        consumer.subscribe(topics.meter_state(name, "grid"), MeterState, inbox)
        await consumer.subscribed()
        await bridge.publish(topics.meter_state(name, "grid"), EXAMPLES[MeterState])
        await inbox.wait_for(1)

        own_broker.stop()
        await asyncio.wait_for(_until(lambda: not bridge.connected.is_set()), 5)
        # Wipe the broker's memory so that only republication can restore the retained state.
        for leftover in own_broker.workdir.glob("*.db"):
            leftover.unlink()
        await asyncio.to_thread(own_broker.start)
        await bridge.wait_connected(30)
        await consumer.wait_connected(30)
        # The retained state came back (republished by the bridge), and the subscription works.
        await inbox.wait_for(2, timeout=30)
        await bridge.publish(topics.meter_state(name, "other"), EXAMPLES[MeterState])
        await bridge.publish(topics.meter_state(name, "grid"), EXAMPLES[MeterState])
        await inbox.wait_for(3, timeout=30)
        assert bridge.stats.connects == 2


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from shared.bus import Bus
    from shared.config import MqttConfig

    async def main():
        async with Bus(MqttConfig(host=sys.argv[1], port=int(sys.argv[2])), site=sys.argv[3], service="doomed") as bus:
            await bus.wait_connected(30)
            print("up", flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_last_will_is_published_when_a_process_is_killed(mosquitto: Broker) -> None:
    name = site()
    async with Bus(mqtt_for(mosquitto), site=name, service="watcher", announce=False) as watcher:
        await watcher.wait_connected(30)
        inbox = Inbox()
        watcher.subscribe(topics.service_availability(name, "doomed"), Availability, inbox)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, mosquitto.host, str(mosquitto.port), name],
            stdout=subprocess.PIPE,
            cwd=os.getcwd(),
        )
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 10)
            assert line.strip() == b"up"
            (_, first), *_ = await inbox.wait_for(1)
            assert first.state is AvailabilityState.ONLINE
            os.kill(child.pid, signal.SIGKILL)  # no clean disconnect: the broker must use the will
        finally:
            child.wait(5)
        items = await inbox.wait_for(2, timeout=30)
        assert items[-1][1].state is AvailabilityState.OFFLINE
        assert items[-1][1].reason == "connection lost"


async def test_clean_stop_says_offline(mosquitto: Broker) -> None:
    name = site()
    async with Bus(mqtt_for(mosquitto), site=name, service="watcher", announce=False) as watcher:
        await watcher.wait_connected(30)
        inbox = Inbox()
        watcher.subscribe(topics.service_availability(name, "short"), Availability, inbox)
        async with Bus(mqtt_for(mosquitto), site=name, service="short") as short:
            await short.wait_connected(30)
            await inbox.wait_for(1)
        items = await inbox.wait_for(2)
        assert [i[1].state for i in items] == [AvailabilityState.ONLINE, AvailabilityState.OFFLINE]
        assert items[-1][1].reason == "stopped"


async def test_command_carries_a_message_expiry(mosquitto: Broker) -> None:
    """An expired command dies in the broker: a bridge connecting late never sees it."""
    from datetime import timedelta

    from shared.messages import utc_now

    name = site()
    cfg = mqtt_for(mosquitto)
    bridge_id = f"bridge-{name}"
    # The bridge has a persistent session, then goes away.
    async with Bus(cfg, site=name, service="bridge", client_id=bridge_id, persistent_session=True,
                   session_expiry_s=600) as bridge:
        bridge.subscribe(topics.inverter_command(name, "inv1"), InverterCommand, Inbox())
        await bridge.subscribed()
    async with Bus(cfg, site=name, service="dispatcher") as dispatcher:
        await dispatcher.wait_connected(30)
        short = InverterCommand(ts=utc_now(), id="short", mode="standby", expires_at=utc_now() + timedelta(seconds=1))
        long = InverterCommand(ts=utc_now(), id="long", mode="standby", expires_at=utc_now() + timedelta(seconds=60))
        await dispatcher.publish(topics.inverter_command(name, "inv1"), short)
        await dispatcher.publish(topics.inverter_command(name, "inv1"), long)
    await asyncio.sleep(2.2)
    inbox = Inbox()
    async with Bus(cfg, site=name, service="bridge", client_id=bridge_id, persistent_session=True,
                   session_expiry_s=600) as bridge:
        bridge.subscribe(topics.inverter_command(name, "inv1"), InverterCommand, inbox)
        await inbox.wait_for(1)
        await asyncio.sleep(0.5)
    assert [c.id for _, c in inbox.items] == ["long"]


async def test_a_wildcard_reader_reports_bad_commands_on_its_own_event_topic_not_the_ack(
    pair: tuple[str, Bus, Bus],
) -> None:
    """Only the addressee answers a command; a recorder-like reader must not ack in its name."""
    name, sender, receiver = pair
    seen, acks, events = Inbox(), Inbox(), Inbox()
    receiver.subscribe(topics.everything(name), model_for_topic, seen)
    sender.subscribe(topics.inverter_ack(name, "inv1"), CommandAck, acks)
    sender.subscribe(receiver.event_topic, Event, events)
    await receiver.subscribed()
    await sender.subscribed()
    await sender.publish_raw(topics.inverter_command(name, "inv1"), b'{"id": "x", "mode": "warp"}', qos=1)
    (_, event), *_ = await events.wait_for(1)
    assert event.code == "invalid_payload" and event.topic == topics.inverter_command(name, "inv1")
    await asyncio.sleep(0.3)
    assert acks.items == []


async def test_an_id_no_answer_can_carry_is_answered_without_one(pair: tuple[str, Bus, Bus]) -> None:
    """A lone surrogate is valid in a JSON string but not in UTF-8: the answer cannot echo it."""
    name, sender, receiver = pair
    acks = Inbox()
    receiver.subscribe(topics.inverter_command(name, "inv1"), InverterCommand, Inbox())
    sender.subscribe(topics.inverter_ack(name, "inv1"), CommandAck, acks)
    await receiver.subscribed()
    await sender.subscribed()
    await sender.publish_raw(topics.inverter_command(name, "inv1"), b'{"id": "\\ud800x", "mode": "charge"}', qos=1)
    (_, ack), *_ = await acks.wait_for(1)
    assert ack.command_id is None and ack.status is AckStatus.ERROR
