"""publish_discovery against a real Mosquitto: retained configs appear, and a device removed from the
config has its configs cleared (empty retained payload), while configs of other sites are untouched."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

from shared import homeassistant as ha
from shared.bus import Bus
from shared.config import MqttConfig, OngridConfig, load_config
from shared.ports import free_port
from shared.topics import Kind
from tests.support import Broker
from tests.support.retained import retained


def _config(broker: Broker, site: str, extra_meter: bool) -> OngridConfig:
    cfg = load_config(
        "deploy/scenarios/seed-house.yaml", site=site, mqtt=MqttConfig(host=broker.host, port=broker.port)
    )
    if extra_meter:
        heat_pump = cfg.meters[0].model_copy(update={"id": "heatpump"})
        cfg = cfg.model_copy(update={"meters": (*cfg.meters, heat_pump)})
    return cfg


async def _publish(cfg: OngridConfig) -> ha.DiscoveryResult:
    async with Bus(cfg.mqtt, site=cfg.site, service="dispatcher") as bus:
        return await ha.publish_discovery(bus, cfg, timeout_s=5)


async def test_configs_are_retained_and_removed_devices_are_cleared(mosquitto: Broker) -> None:
    site = f"ha{uuid.uuid4().hex[:8]}"
    other_site = f"ha{uuid.uuid4().hex[:8]}"
    first = await _publish(_config(mosquitto, site, extra_meter=True))
    await _publish(_config(mosquitto, other_site, extra_meter=True))
    assert first.removed == ()

    seen = await retained(mosquitto, f"homeassistant/+/ongrid_{site}/+/config")
    assert set(seen) == set(first.published)
    assert any("/meter_heatpump_" in topic for topic in seen)

    second = await _publish(_config(mosquitto, site, extra_meter=False))
    assert second.removed and all("/meter_heatpump_" in topic for topic in second.removed)
    assert len(second.removed) == len(ha.METER_SENSORS)

    after = await retained(mosquitto, f"homeassistant/+/ongrid_{site}/+/config")
    assert set(after) == set(second.published)
    assert not any("/meter_heatpump_" in topic for topic in after)
    assert after == {
        topic: json.loads(ha.encode(p))
        for topic, p in ha.discovery_configs(_config(mosquitto, site, extra_meter=False)).items()
    }

    # Another site's configs are not ours to remove.
    untouched = await retained(mosquitto, f"homeassistant/+/ongrid_{other_site}/+/config")
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

    after = await retained(mosquitto, f"homeassistant/+/ongrid_{site}/+/config")
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
            seen = await retained(broker, f"homeassistant/+/ongrid_{site}/+/config")
        assert set(seen) == set(ha.discovery_configs(cfg, (Kind.METER,)))
    finally:
        broker.stop()


def _seed_file(folder: Path, site: str, host: str, port: int, *, can_only: bool = False) -> Path:
    """The seed house as a config file a person runs ``ongrid`` with; ``can_only``: no BMS links."""
    data = yaml.safe_load(Path("deploy/scenarios/seed-house.yaml").read_text())
    data |= {"site": site, "mqtt": {"host": host, "port": port}}
    for battery in data["batteries"] if can_only else ():
        battery.pop("transport")
    config = folder / "ongrid.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services", "ha-discovery", *args], capture_output=True, text=True, timeout=60
    )


async def test_ha_discovery_clears_the_entities_of_a_service_that_no_longer_runs(
    mosquitto: Broker, tmp_path: Path
) -> None:
    """The last battery becomes CAN-only: the bms-bridge will not start (nothing to read), so
    ``ongrid ha-discovery bms-bridge`` clears its entities, and only those."""
    site = f"ha{uuid.uuid4().hex[:8]}"
    cfg = _config(mosquitto, site, extra_meter=False)
    everything = ha.discovery_configs(cfg)
    async with Bus(cfg.mqtt, site=site, service="dispatcher") as bus:
        await bus.wait_connected(10)
        for topic, payload in everything.items():
            assert await bus.publish_raw(topic, ha.encode(payload), qos=1, retain=True)
    bms = set(ha.discovery_configs(cfg, (Kind.BMS,)))
    assert bms

    config = _seed_file(tmp_path, site, mosquitto.host, mosquitto.port, can_only=True)
    result = await asyncio.to_thread(_cli, "bms-bridge", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert f"bms-bridge: 0 configs published, {len(bms)} removed" in result.stdout

    after = await retained(mosquitto, f"homeassistant/+/ongrid_{site}/+/config")
    assert after == {t: json.loads(ha.encode(p)) for t, p in everything.items() if t not in bms}
    # It spoke neither online nor offline for the bms-bridge (one may be running elsewhere).
    assert not await retained(mosquitto, f"ongrid/{site}/service/bms-bridge/#")


def test_ha_discovery_fails_clearly(tmp_path: Path) -> None:
    config = _seed_file(tmp_path, "seed", "127.0.0.1", free_port())
    nobody = _cli("meter-bridge", "--config", str(config), "--connect-s", "1")
    assert nobody.returncode == 1 and "no broker at 127.0.0.1:" in nobody.stderr, nobody.stderr
    wrong = _cli("simulator", "--config", str(config))
    assert wrong.returncode == 2 and "'simulator' publishes no Home Assistant entities" in wrong.stderr
