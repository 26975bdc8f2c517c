"""The broker ACL, enforced by real mosquitto started with deploy/mosquitto (conf, ACL) and users
made by the bootstrap script, exactly as the compose deployment does.

"The inverter bridge never sees it" is checked with a client logged in as the inverter bridge and
subscribed to the command topic, the way the bridge subscribes. Each forbidden publish is QoS 1 and
acknowledged before the dispatcher's allowed one is sent, so had the broker routed it, it would have
arrived first: receiving only the dispatcher's command proves the other was dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import aiomqtt
import pytest
from pydantic import SecretStr

from shared import homeassistant as ha
from shared import topics
from shared.bus import Bus
from shared.config import MqttConfig, load_config
from shared.messages import CommandMode, DispatcherModeName, InverterCommand, ModeRequest, utc_now
from shared.topics import Kind
from tests.support.compose_local import LocalCompose, local_compose

SITE = "acl"
COMMAND = topics.inverter_command(SITE, "inv1")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCompose]:
    with local_compose(tmp_path_factory.mktemp("acl")) as running:
        yield running


def _client(broker: LocalCompose, user: str | None, password: str | None = None) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        broker.broker_port,
        username=user,
        password=password if password is not None else (broker.password(user) if user else None),
        identifier=f"{user or 'anon'}-{uuid.uuid4().hex[:6]}",
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
    )


@pytest.fixture
async def bridge(broker: LocalCompose) -> AsyncIterator[aiomqtt.Client]:
    async with _client(broker, "inverter-bridge") as client:
        await client.subscribe(topics.inverter_command("+", "+"), qos=1)
        yield client


async def _received(client: aiomqtt.Client, until_id: str, timeout_s: float = 5.0) -> list[InverterCommand]:
    seen: list[InverterCommand] = []
    async with asyncio.timeout(timeout_s):
        async for message in client.messages:
            command = InverterCommand.model_validate_json(bytes(message.payload))  # type: ignore[arg-type]
            seen.append(command)
            if command.id == until_id:
                return seen
    return seen


def _command(source: str) -> InverterCommand:
    return InverterCommand(ts=utc_now(), mode=CommandMode.CHARGE, power_w=1000, source=source)


async def test_anonymous_clients_are_refused(broker: LocalCompose) -> None:
    with pytest.raises(aiomqtt.MqttError, match=r"(?i)not authori[sz]ed|bad user"):
        async with _client(broker, None):
            pass


async def test_a_wrong_password_is_refused(broker: LocalCompose) -> None:
    with pytest.raises(aiomqtt.MqttError, match=r"(?i)not authori[sz]ed|bad user"):
        async with _client(broker, "dispatcher", password="not-the-password"):
            pass


@pytest.mark.parametrize(
    "intruder", ["nodered", "homeassistant", "bms-bridge", "meter-bridge", "recorder", "simulator", "inverter-bridge"]
)
async def test_only_the_dispatcher_reaches_the_inverter_bridge(
    broker: LocalCompose, bridge: aiomqtt.Client, intruder: str
) -> None:
    forged = _command(intruder)
    async with _client(broker, intruder) as client:
        await client.publish(COMMAND, forged.to_json(), qos=1)
    genuine = _command("dispatcher")
    async with _client(broker, "dispatcher") as dispatcher:
        await dispatcher.publish(COMMAND, genuine.to_json(), qos=1)
    seen = await _received(bridge, genuine.id)
    assert [c.id for c in seen] == [genuine.id]
    # The broker says why (client ids here start with the user name).
    assert f"Denied PUBLISH from {intruder}-" in broker.broker_log()


async def _sees(broker: LocalCompose, reader: str, writer: str, topic: str, payload: bytes) -> bool:
    """Does ``reader`` receive what ``writer`` publishes on ``topic``? (Retained, so order is moot.)"""
    async with _client(broker, writer) as client:
        await client.publish(topic, payload, qos=1, retain=True)
    async with _client(broker, reader) as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(1.0):
                async for message in client.messages:
                    return bytes(message.payload) == payload  # type: ignore[arg-type]
        except TimeoutError:
            return False
    return False


@pytest.mark.parametrize(
    ("writer", "topic", "allowed"),
    [
        ("nodered", topics.mode_set(SITE), True),
        ("homeassistant", topics.mode_set(SITE), True),
        ("nodered", topics.forecast(SITE, "pv"), True),
        ("nodered", topics.dispatcher_decision(SITE), False),
        ("homeassistant", topics.inverter_state(SITE, "inv1"), False),
        ("meter-bridge", topics.meter_state(SITE, "grid"), True),
        ("meter-bridge", topics.battery_state(SITE, "bat1"), False),
        ("bms-bridge", topics.battery_state(SITE, "bat1"), True),
        ("bms-bridge", topics.inverter_state(SITE, "inv1"), False),
        ("inverter-bridge", topics.inverter_state(SITE, "inv1"), True),
        ("dispatcher", topics.inverter_state(SITE, "inv1"), False),
        ("dispatcher", topics.ha_discovery("select", "ongrid_acl", "dispatcher_mode"), True),
        ("homeassistant", topics.ha_discovery("select", "ongrid_acl", "dispatcher_mode"), False),
        # The dispatcher announces a select and sensors only: no switch or button, no other prefix.
        ("dispatcher", topics.ha_discovery("switch", "ongrid_acl", "dispatcher_grid_charge"), False),
        ("dispatcher", topics.ha_discovery("button", "ongrid_acl", "dispatcher_reset"), False),
        ("dispatcher", "homeassistant/status", False),
        # Each bridge announces its own device's entities, the recorder the daily statistics'.
        ("inverter-bridge", topics.ha_discovery("sensor", "ongrid_acl", "inverter_inv1_soc"), True),
        ("bms-bridge", topics.ha_discovery("sensor", "ongrid_acl", "bms_bat1_module1_soc"), True),
        ("meter-bridge", topics.ha_discovery("sensor", "ongrid_acl", "meter_grid_power"), True),
        ("recorder", topics.ha_discovery("sensor", "ongrid_acl", "stats_site_pv_today"), True),
        ("nodered", topics.ha_discovery("sensor", "ongrid_acl", "meter_grid_power"), False),
        # Sensors only: a bridge cannot announce an entity that acts (nor replace the mode select).
        ("meter-bridge", topics.ha_discovery("select", "ongrid_acl", "dispatcher_mode"), False),
        ("inverter-bridge", topics.ha_discovery("switch", "ongrid_acl", "inverter_inv1_charge"), False),
        ("recorder", topics.ha_discovery("button", "ongrid_acl", "stats_site_reset"), False),
        ("bms-bridge", "homeassistant/sensor/ongrid_acl/bms_bat1_soc/state", False),
        ("bms-bridge", "homeassistant/status", False),
        ("simulator", topics.ha_discovery("sensor", "ongrid_acl", "inverter_inv1_soc"), False),
        ("recorder", topics.daily_stats(SITE), True),
        ("nodered", topics.service_availability(SITE, "dispatcher"), False),
    ],
)
async def test_who_may_publish_what(broker: LocalCompose, writer: str, topic: str, allowed: bool) -> None:
    # The recorder reads all of ongrid/; homeassistant reads homeassistant/ too.
    reader = "homeassistant" if topic.startswith("homeassistant/") else "recorder"
    payload = ModeRequest(mode=DispatcherModeName.HOLD).to_json() + uuid.uuid4().hex.encode()
    assert await _sees(broker, reader, writer, topic, payload) is allowed


@pytest.mark.parametrize(
    ("service", "kind"),
    [
        ("inverter-bridge", Kind.INVERTER),
        ("bms-bridge", Kind.BMS),
        ("meter-bridge", Kind.METER),
        ("recorder", Kind.STATS),
        ("dispatcher", Kind.DISPATCHER),
    ],
)
async def test_each_service_may_announce_and_clear_its_own_discovery(
    broker: LocalCompose, service: str, kind: Kind
) -> None:
    """publish_discovery as the service's own broker user: the ACL lets it read its configs back
    (without that scan nothing would ever be removed) and clear them."""
    site = f"acl{uuid.uuid4().hex[:6]}"
    mqtt = MqttConfig(
        host="127.0.0.1", port=broker.broker_port, username=service, password=SecretStr(broker.password(service))
    )
    full = load_config("deploy/scenarios/seed-house.yaml", site=site, mqtt=mqtt)
    # Without its devices (the recorder's and the dispatcher's entities do not depend on devices).
    empty = full.model_copy(update={"inverters": (), "meters": (), "batteries": ()})
    async with Bus(mqtt, site=site, service=service) as bus:
        first = await ha.publish_discovery(bus, full, (kind,), timeout_s=5)
        assert first.published
        second = await ha.publish_discovery(bus, empty, (kind,), timeout_s=5)
    assert set(second.removed) == set(first.published) - set(second.published)
    if kind not in (Kind.STATS, Kind.DISPATCHER):
        assert second.removed, "the scan read nothing back"
    # And what HA reads at its start is exactly what is left.
    left: set[str] = set()
    async with _client(broker, "homeassistant") as client:
        await client.subscribe(topics.ha_discovery_pattern(ha.node_id(site)), qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for message in client.messages:
                    if message.payload:
                        left.add(str(message.topic))
    assert left == set(second.published)
