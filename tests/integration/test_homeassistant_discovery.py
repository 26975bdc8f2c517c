"""publish_discovery against a real Mosquitto: retained configs appear, and a device removed from the
config has its configs cleared (empty retained payload), while configs of other sites are untouched."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiomqtt

from shared import homeassistant as ha
from shared.bus import Bus
from shared.config import MqttConfig, OngridConfig, load_config
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
