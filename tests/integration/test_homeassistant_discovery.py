"""publish_discovery against a real Mosquitto: retained configs appear, and a device removed from the
config has its configs cleared (empty retained payload), while configs of other sites are untouched."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiomqtt

from shared import homeassistant as ha
from shared.bus import Bus
from shared.config import MqttConfig, OngridConfig, load_config
from shared.ports import free_port
from shared.topics import Kind
from tests.support import Broker


def _config(broker: Broker, site: str, extra_meter: bool) -> OngridConfig:
    cfg = load_config(
        "deploy/scenarios/seed-house.yaml", site=site, mqtt=MqttConfig(host=broker.host, port=broker.port)
    )
    if extra_meter:
        heat_pump = cfg.meters[0].model_copy(update={"id": "heatpump"})
        cfg = cfg.model_copy(update={"meters": (*cfg.meters, heat_pump)})
    return cfg


async def _retained(broker: Broker, pattern: str, settle_s: float = 1.0) -> dict[str, dict[str, Any]]:
    """Every retained message under ``pattern``, read by a fresh client as HA would at start."""
    found: dict[str, dict[str, Any]] = {}
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"ha-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(pattern, qos=1)
        try:
            async with asyncio.timeout(settle_s):
                async for message in client.messages:
                    if message.retain and message.payload:
                        found[str(message.topic)] = json.loads(bytes(message.payload))  # type: ignore[arg-type]
        except TimeoutError:
            pass
    return found


async def _publish(cfg: OngridConfig) -> ha.DiscoveryResult:
    async with Bus(cfg.mqtt, site=cfg.site, service="dispatcher") as bus:
        return await ha.publish_discovery(bus, cfg, timeout_s=5)


async def test_configs_are_retained_and_removed_devices_are_cleared(mosquitto: Broker) -> None:
    site = f"ha{uuid.uuid4().hex[:8]}"
    other_site = f"ha{uuid.uuid4().hex[:8]}"
    first = await _publish(_config(mosquitto, site, extra_meter=True))
    await _publish(_config(mosquitto, other_site, extra_meter=True))
    assert first.removed == ()

    seen = await _retained(mosquitto, f"homeassistant/+/ongrid_{site}/+/config")
    assert set(seen) == set(first.published)
    assert any("/meter_heatpump_" in topic for topic in seen)

    second = await _publish(_config(mosquitto, site, extra_meter=False))
    assert second.removed and all("/meter_heatpump_" in topic for topic in second.removed)
    assert len(second.removed) == len(ha.METER_SENSORS)

    after = await _retained(mosquitto, f"homeassistant/+/ongrid_{site}/+/config")
    assert set(after) == set(second.published)
    assert not any("/meter_heatpump_" in topic for topic in after)
    assert after == {
        topic: json.loads(ha.encode(p))
        for topic, p in ha.discovery_configs(_config(mosquitto, site, extra_meter=False)).items()
    }

    # Another site's configs are not ours to remove.
    untouched = await _retained(mosquitto, f"homeassistant/+/ongrid_{other_site}/+/config")
    assert any("/meter_heatpump_" in topic for topic in untouched)

    # Publishing again with nothing changed removes nothing.
    third = await _publish(_config(mosquitto, site, extra_meter=False))
    assert third.removed == ()


async def test_each_service_removes_only_its_own_kind_and_old_configs_are_taken_over(mosquitto: Broker) -> None:
    """Before issue 15 the dispatcher published every device's configs. After the upgrade the
    dispatcher (its own entities only) removes none of them, each bridge keeps its own unchanged
    and clears only its own stale ones."""
    site = f"ha{uuid.uuid4().hex[:8]}"
    cfg = _config(mosquitto, site, extra_meter=True)
    everything = ha.discovery_configs(cfg)
    async with Bus(cfg.mqtt, site=site, service="dispatcher") as bus:
        await bus.wait_connected(10)
        for topic, payload in everything.items():
            assert await bus.publish_raw(topic, ha.encode(payload), qos=1, retain=True)

    async def publish(config: OngridConfig, service: str, kind: Kind) -> ha.DiscoveryResult:
        async with Bus(config.mqtt, site=site, service=service) as bus:
            return await ha.publish_discovery(bus, config, (kind,), timeout_s=5)

    assert (await publish(cfg, "dispatcher", Kind.DISPATCHER)).removed == ()
    assert (await publish(cfg, "recorder", Kind.STATS)).removed == ()
    no_devices = cfg.model_copy(update={"inverters": (), "meters": (), "batteries": ()})
    removed = (await publish(no_devices, "meter-bridge", Kind.METER)).removed
    assert set(removed) == set(ha.discovery_configs(cfg, (Kind.METER,)))

    after = await _retained(mosquitto, f"homeassistant/+/ongrid_{site}/+/config")
    assert after == {t: json.loads(ha.encode(p)) for t, p in everything.items() if t not in removed}


async def test_a_service_started_before_the_broker_still_announces(tmp_path: Path) -> None:
    """announce waits for the connection however long it takes: here longer than the scan's own
    10 s bound, after which it used to give up for good."""
    broker = Broker("127.0.0.1", free_port(), tmp_path)
    site = f"ha{uuid.uuid4().hex[:8]}"
    cfg = _config(broker, site, extra_meter=False)
    try:
        async with Bus(cfg.mqtt, site=site, service="meter-bridge") as bus:
            announcing = asyncio.create_task(ha.announce(bus, cfg, Kind.METER))
            await asyncio.sleep(12.0)
            assert not announcing.done()
            broker.start()
            await asyncio.wait_for(announcing, 60.0)
            seen = await _retained(broker, f"homeassistant/+/ongrid_{site}/+/config")
        assert set(seen) == set(ha.discovery_configs(cfg, (Kind.METER,)))
    finally:
        broker.stop()
