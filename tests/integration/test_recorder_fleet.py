"""The recorder as a process on the real fleet path: bus (mosquitto) -> recorder -> database.

Each test publishes a known stream of readings and counts what the database holds: published
equals stored, through a database outage, a SIGKILL of the recorder, and into each backend.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from services.devtools.devdb import Server, influxd_available, running_influxd, running_victoria, victoria_available
from shared import topics
from shared.bus import Bus
from shared.config import MqttConfig
from shared.messages import BatteryLimits, BatteryState, CellState, MeterRole, MeterState, ModuleState
from tests.support import REPO, Broker, Child

needs_influxd = pytest.mark.skipif(not influxd_available(), reason="influxd not installed (apt-get install influxdb)")
needs_victoria = pytest.mark.skipif(
    not victoria_available(), reason="victoria-metrics not installed (apt-get install victoria-metrics)"
)
START = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def influxd() -> Iterator[Server]:
    if not influxd_available():
        pytest.skip("influxd not installed (apt-get install influxdb)")
    with running_influxd() as server:
        yield server


def meter(i: int, device: str = "grid") -> MeterState:
    return MeterState(
        ts=START + timedelta(seconds=5 * i),
        device=device,
        model="eastron_sdm120",
        role=MeterRole.GRID,
        power_w=100.0 + i,
        voltage_v=240.0,
        current_a=0.5,
        frequency_hz=50.0,
        import_energy_wh=1000.0 + i,
        export_energy_wh=0.0,
    )


def battery(i: int) -> BatteryState:
    module = ModuleState(
        index=0,
        voltage_v=51.0,
        current_a=-5.0,
        soc_pct=50.0,
        cells=tuple(CellState(voltage_v=3.40 + 0.001 * c) for c in range(3)),
    )
    return BatteryState(
        ts=START + timedelta(seconds=5 * i),
        device="bms1",
        voltage_v=51.0,
        current_a=-5.0,
        power_w=-255.0,
        soc_pct=50.0,
        limits=BatteryLimits(charge_current_a=50.0, discharge_current_a=50.0),
        modules=(module, module.model_copy(update={"index": 1})),
    )


class Fleet:
    """A recorder process plus a publisher on the same broker and site."""

    def __init__(self, broker: Broker, tmp: Path, influx: dict[str, object] | None) -> None:
        self.site = "t" + uuid.uuid4().hex[:10]
        self.broker = broker
        self.tmp = tmp
        self.config = tmp / "ongrid.yaml"
        data: dict[str, object] = {
            "site": self.site,
            "mqtt": {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.1, "reconnect_max_s": 1.0},
            "recorder": {
                "spool_dir": str(tmp / "spool"),
                "sqlite_path": str(tmp / "store.sqlite"),
                "flush_interval_s": 0.2,
                "status_interval_s": 0.5,
                "stats_interval_s": 3600,
                "retry_max_s": 0.5,
                "batch_size": 200,
            },
        }
        if influx is not None:
            data["influxdb"] = influx
        self.config.write_text(yaml.safe_dump(data))
        self.child = Child(
            "services.recorder",
            "--config",
            str(self.config),
            "--log-level",
            "INFO",
            log=tmp / "recorder.log",
            env={"PYTHONPATH": str(REPO)},
        )

    def start(self) -> None:
        self.child.start(append=True)

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.child.running():
            self.child.kill(sig, timeout=20)

    def log(self) -> str:
        return self.child.output(tail_chars=3000)


@pytest.fixture
async def publisher(mosquitto: Broker) -> AsyncIterator[Bus]:
    bus = Bus(MqttConfig(host=mosquitto.host, port=mosquitto.port), site="pub", service="publisher", announce=False)
    async with bus:
        await bus.wait_connected(10)
        yield bus


async def wait_recorder_online(bus: Bus, fleet: Fleet, timeout: float = 120.0) -> None:
    """The recorder's retained ``online`` (published after it subscribed) says it is listening."""
    seen = asyncio.Event()

    async def on(topic: str, payload: bytes) -> None:
        if b'"online"' in payload:
            seen.set()

    bus.subscribe_raw(topics.service_availability(fleet.site, "recorder"), on)
    await bus.subscribed()
    await asyncio.wait_for(seen.wait(), timeout)
    await asyncio.sleep(0.3)  # its subscriptions are sent right before the online message


def influx_count(server: Server, measurement: str, field: str, site: str) -> int:
    q = f'SELECT count("{field}") FROM "{measurement}" WHERE "site" = \'{site}\''
    url = f"{server.url}/query?" + urllib.parse.urlencode({"db": "ongrid", "q": q})
    with urllib.request.urlopen(url, timeout=5) as response:
        data = json.loads(response.read())
    series = data["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


async def eventually(check, expected: int, timeout: float = 120.0) -> int:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    value = -1
    while asyncio.get_running_loop().time() < deadline:
        value = await asyncio.to_thread(check)
        if value >= expected:
            return value
        await asyncio.sleep(0.2)
    return value


async def publish_meters(bus: Bus, site: str, first: int, count: int) -> None:
    for i in range(first, first + count):
        assert await bus.publish(topics.meter_state(site, "grid"), meter(i), retain=False)


@needs_influxd
async def test_published_equals_stored_in_influxdb(
    tmp_path: Path, mosquitto: Broker, publisher: Bus, influxd: Server
) -> None:
    fleet = Fleet(mosquitto, tmp_path, {"api": "v1", "url": influxd.url, "database": "ongrid"})
    fleet.start()
    try:
        await wait_recorder_online(publisher, fleet)
        await publish_meters(publisher, fleet.site, 0, 300)
        for i in range(20):
            await publisher.publish(topics.battery_state(fleet.site, "bms1"), battery(i), retain=False)
        got = await eventually(lambda: influx_count(influxd, "meter", "power_w", fleet.site), 300)
        cells = await eventually(lambda: influx_count(influxd, "battery_cell", "voltage_v", fleet.site), 20 * 6)
        await asyncio.sleep(1.0)  # anything extra (a double) would show up now
        assert influx_count(influxd, "meter", "power_w", fleet.site) == 300, fleet.log()
        assert got == 300
        assert cells == 20 * 2 * 3
        assert influx_count(influxd, "battery_module", "soc_pct", fleet.site) == 40
        assert influx_count(influxd, "battery", "soc_pct", fleet.site) == 20
    finally:
        fleet.kill()


@needs_influxd
async def test_database_outage_loses_and_doubles_nothing(
    tmp_path: Path, mosquitto: Broker, publisher: Bus, influxd: Server
) -> None:
    fleet = Fleet(
        mosquitto, tmp_path, {"api": "v1", "url": influxd.url, "database": "ongrid", "timeout_s": 2, "retries": 0}
    )
    fleet.start()
    try:
        await wait_recorder_online(publisher, fleet)
        await publish_meters(publisher, fleet.site, 0, 100)
        assert await eventually(lambda: influx_count(influxd, "meter", "power_w", fleet.site), 100) == 100
        influxd.stop()
        await publish_meters(publisher, fleet.site, 100, 150)
        await asyncio.sleep(1.5)  # the recorder tries, fails, and spools
        spooled = list((tmp_path / "spool").rglob("*.seg"))
        assert spooled, "rows written while the database is down must wait in the spool"
        influxd.start()
        await publish_meters(publisher, fleet.site, 250, 50)
        got = await eventually(lambda: influx_count(influxd, "meter", "power_w", fleet.site), 300)
        await asyncio.sleep(1.0)
        assert influx_count(influxd, "meter", "power_w", fleet.site) == 300, fleet.log()
        assert got == 300
        assert "failing" in fleet.log() and "recovered" in fleet.log()
    finally:
        if influxd.process is None:
            influxd.start()
        fleet.kill()


@needs_influxd
async def test_sigkill_and_restart_loses_nothing(
    tmp_path: Path, mosquitto: Broker, publisher: Bus, influxd: Server
) -> None:
    fleet = Fleet(mosquitto, tmp_path, {"api": "v1", "url": influxd.url, "database": "ongrid"})
    fleet.start()
    try:
        await wait_recorder_online(publisher, fleet)
        await publish_meters(publisher, fleet.site, 0, 100)
        assert await eventually(lambda: influx_count(influxd, "meter", "power_w", fleet.site), 100) == 100
        fleet.kill(signal.SIGKILL)
        # Published while no recorder runs: the broker keeps them for the persistent session.
        await publish_meters(publisher, fleet.site, 100, 100)
        fleet.start()
        await publish_meters(publisher, fleet.site, 200, 50)
        got = await eventually(lambda: influx_count(influxd, "meter", "power_w", fleet.site), 250)
        await asyncio.sleep(1.0)
        assert influx_count(influxd, "meter", "power_w", fleet.site) == 250, fleet.log()
        assert got == 250
    finally:
        fleet.kill()


async def test_embedded_store_without_influxdb(tmp_path: Path, mosquitto: Broker, publisher: Bus) -> None:
    from services.recorder.backends import SqliteStore

    fleet = Fleet(mosquitto, tmp_path, None)
    fleet.start()
    try:
        await wait_recorder_online(publisher, fleet)
        await publish_meters(publisher, fleet.site, 0, 120)
        store = SqliteStore(tmp_path / "store.sqlite")
        try:
            got = await eventually(lambda: store.count("meter"), 120)
            assert got == 120, fleet.log()
        finally:
            store.close()
    finally:
        fleet.kill()


def victoria_export(server: Server, metric: str) -> list[dict[str, object]]:
    url = f"{server.url}/api/v1/export?" + urllib.parse.urlencode({"match[]": metric})
    with urllib.request.urlopen(url, timeout=5) as response:
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]


@needs_victoria
async def test_v2_write_api_into_a_real_server(tmp_path: Path, mosquitto: Broker, publisher: Bus) -> None:
    with running_victoria() as vm:
        influx = {"api": "v2", "url": vm.url, "bucket": "ongrid", "org": "home", "token": "secret", "database": None}
        fleet = Fleet(mosquitto, tmp_path, influx)
        fleet.start()
        try:
            await wait_recorder_online(publisher, fleet)
            await publish_meters(publisher, fleet.site, 0, 80)

            def stored() -> int:
                # VictoriaMetrics names a line-protocol field "<measurement>_<field>".
                rows = victoria_export(vm, f'meter_power_w{{site="{fleet.site}"}}')
                return sum(len(r["values"]) for r in rows)  # type: ignore[arg-type]

            got = await eventually(stored, 80)
            assert got == 80, fleet.log()
            rows = victoria_export(vm, f'meter_power_w{{site="{fleet.site}"}}')
            values = sorted(v for r in rows for v in r["values"])  # type: ignore[attr-defined]
            assert values == [100.0 + i for i in range(80)]
            assert rows[0]["metric"]["role"] == "grid"  # type: ignore[index]
        finally:
            fleet.kill()
