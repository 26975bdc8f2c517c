"""Many homes on one broker: a load generator, a group of recorder processes, and the count.

Used by ``benchmarks/scale_out.py`` (1,000 sites x 60 s, figures as JSON) and
``tests/load/test_scale_out.py`` (a smaller size, with assertions), so it lives with the dev tools.

* ``LoadPlan``: N sites, each with an inverter (``inv1``) and a grid meter (``grid``) publishing one
  state message per second for S seconds. Every message carries its sequence number in an energy
  counter (``import_energy_total_wh`` / ``import_energy_wh`` = second index), so what is stored
  can be checked value by value: each series must hold exactly the values 0..S-1, once each.
* ``Publisher``: paho-mqtt connections (MQTT 5, QoS 1, retained as the contract says for state),
  paced evenly within each second; counts PUBACKs.
* ``RecorderGroup``: ``python -m services.recorder`` processes with ``recorder.all_sites`` and one
  ``recorder.share_group``, so the broker hands each message to exactly one of them.
* ``influx_series`` / ``sqlite_series``: per-series count, distinct count, min and max of the
  sequence field, read back from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from shared import topics
from shared.bus import Bus
from shared.config import MqttConfig
from shared.messages import InverterState, MeterRole, MeterState, RecorderStatus, RunningState
from shared.topics import Kind, Stream

from .devdb import influxd_available, running_influxd
from .localbroker import running_broker
from .processes import Child, stop_all
from .procstats import CpuWindow, memory_mb

# The stored field that carries each message's sequence number, per measurement.
SEQUENCE_FIELD = {"inverter": "import_energy_total_wh", "meter": "import_energy_wh"}
DEVICES = (("inverter", "inv1"), ("meter", "grid"))


@dataclass(frozen=True)
class LoadPlan:
    sites: int
    seconds: int
    prefix: str
    t0: datetime

    def site(self, index: int) -> str:
        return f"{self.prefix}{index:04d}"

    @property
    def messages(self) -> int:
        return self.sites * self.seconds * len(DEVICES)

    def series(self) -> set[tuple[str, str, str]]:
        """(measurement, site, device) of every series the plan writes."""
        return {(kind, self.site(i), device) for i in range(self.sites) for kind, device in DEVICES}


def inverter_state(site_index: int, second: int, ts: datetime) -> InverterState:
    return InverterState(
        ts=ts,
        device="inv1",
        model="sofar_me3000sp",
        running_state=RunningState.DISCHARGING,
        battery_power_w=float(400 + site_index % 200),
        battery_soc_pct=55.0,
        battery_voltage_v=51.2,
        battery_temp_c=21.0,
        grid_power_w=float(second % 50),
        grid_voltage_v=241.0,
        grid_frequency_hz=50.0,
        load_power_w=float(420 + site_index % 200 + second % 50),
        pv_power_w=0.0,
        pv_energy_today_wh=0.0,
        export_energy_today_wh=0.0,
        import_energy_today_wh=float(second),
        load_energy_today_wh=float(second),
        pv_energy_total_wh=0.0,
        export_energy_total_wh=0.0,
        import_energy_total_wh=float(second),
        load_energy_total_wh=float(second),
    )


def meter_state(site_index: int, second: int, ts: datetime) -> MeterState:
    return MeterState(
        ts=ts,
        device="grid",
        model="eastron_sdm120",
        role=MeterRole.GRID,
        power_w=float(second % 50),
        voltage_v=241.0,
        current_a=0.2,
        frequency_hz=50.0,
        import_energy_wh=float(second),
        export_energy_wh=0.0,
    )


def second_messages(plan: LoadPlan, site_index: int, second: int) -> list[tuple[str, bytes, int, bool]]:
    """(topic, payload, qos, retain) of one site's messages for one second of the plan."""
    site = plan.site(site_index)
    ts = plan.t0 + timedelta(seconds=second)
    inverter = inverter_state(site_index, second, ts)
    meter = meter_state(site_index, second, ts)
    return [
        (topics.inverter_state(site, "inv1"), inverter.to_json(), inverter.QOS, inverter.RETAIN),
        (topics.meter_state(site, "grid"), meter.to_json(), meter.QOS, meter.RETAIN),
    ]


# -- publishing ------------------------------------------------------------------------------


@dataclass
class PublishReport:
    published: int = 0
    acked: int = 0
    wall_s: float = 0.0
    behind_s: float = 0.0  # how far the generator fell behind its schedule at worst
    cpu_s: float = 0.0


class Publisher:
    """``connections`` MQTT 5 clients; site i publishes on connection ``i % connections``."""

    def __init__(self, host: str, port: int, connections: int, client_prefix: str) -> None:
        self._lock = threading.Lock()
        self._acked = 0
        self.clients: list[paho.Client] = []
        for n in range(connections):
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{client_prefix}-{n}", protocol=paho.MQTTv5)
            # The generator must never be the bottleneck it is measuring: a deep in-flight window.
            client.max_inflight_messages_set(1000)
            client.max_queued_messages_set(0)
            client.on_publish = self._on_publish
            client.connect(host, port, keepalive=30)
            client.loop_start()
            self.clients.append(client)
        deadline = time.monotonic() + 10
        while not all(c.is_connected() for c in self.clients):
            if time.monotonic() > deadline:
                self.close()
                raise TimeoutError(f"load generator could not connect to {host}:{port}")
            time.sleep(0.02)

    def _on_publish(self, _client: Any, _userdata: Any, _mid: int, _rc: Any, _props: Any) -> None:
        with self._lock:
            self._acked += 1

    @property
    def acked(self) -> int:
        with self._lock:
            return self._acked

    def run(
        self, plan: LoadPlan, slices_per_second: int = 20, ack_timeout_s: float = 30.0, share: int = 0, shares: int = 1
    ) -> PublishReport:
        """Publish the plan in real time: second k's messages are spread over [k, k+1) s. With
        ``shares`` > 1 only the sites ``i % shares == share`` (one of several publisher processes)."""
        report = PublishReport()
        cpu0 = time.process_time()
        start = time.monotonic()
        per_slice = -(-plan.sites // slices_per_second)
        for second in range(plan.seconds):
            for part in range(slices_per_second):
                due = start + second + part / slices_per_second
                lag = time.monotonic() - due
                if lag < 0:
                    time.sleep(-lag)
                else:
                    report.behind_s = max(report.behind_s, lag)
                first = part * per_slice
                for site_index in range(first + (share - first) % shares, min(plan.sites, first + per_slice), shares):
                    client = self.clients[site_index % len(self.clients)]
                    for topic, payload, qos, retain in second_messages(plan, site_index, second):
                        client.publish(topic, payload, qos=qos, retain=retain)
                        report.published += 1
        deadline = time.monotonic() + ack_timeout_s
        while self.acked < report.published and time.monotonic() < deadline:
            time.sleep(0.05)
        report.wall_s = time.monotonic() - start
        report.acked = self.acked
        report.cpu_s = time.process_time() - cpu0
        return report

    def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.disconnect()
            client.loop_stop()


# -- the recorders ---------------------------------------------------------------------------


@dataclass
class RecorderGroup:
    """Recorder processes recording every site, splitting the stream by a shared subscription."""

    workdir: Path
    mqtt_host: str
    mqtt_port: int
    hub_site: str
    count: int = 2
    share_group: str = "recorders"
    influx_url: str | None = None
    batch_size: int = 1000
    children: dict[str, Child] = field(default_factory=dict)

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        return {name: child.process for name, child in self.children.items() if child.process is not None}

    def ids(self) -> list[str]:
        return [f"r{n + 1}" for n in range(self.count)]

    def sqlite_path(self, recorder: str) -> Path:
        return self.workdir / recorder / "store.sqlite"

    def config(self, recorder: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "site": self.hub_site,
            "mqtt": {"host": self.mqtt_host, "port": self.mqtt_port, "reconnect_min_s": 0.1, "reconnect_max_s": 1.0},
            "recorder": {
                "id": recorder,
                "all_sites": True,
                "share_group": self.share_group,
                "spool_dir": str(self.workdir / recorder / "spool"),
                "sqlite_path": str(self.sqlite_path(recorder)),
                "batch_size": self.batch_size,
                "flush_interval_s": 0.5,
                "status_interval_s": 1.0,
                "stats_interval_s": 86_400,
            },
        }
        if self.influx_url is not None:
            data["influxdb"] = {"api": "v1", "url": self.influx_url, "database": "ongrid"}
        return data

    def start(self) -> None:
        for recorder in self.ids():
            (self.workdir / recorder).mkdir(parents=True, exist_ok=True)
            path = self.workdir / recorder / "ongrid.yaml"
            path.write_text(yaml.safe_dump(self.config(recorder)))
            child = Child("services.recorder", "--config", str(path), log=self.workdir / recorder / "recorder.log")
            child.start(append=True)
            self.children[recorder] = child

    def dead(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def log_tail(self, recorder: str, chars: int = 2000) -> str:
        path = self.workdir / recorder / "recorder.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        stop_all(self.processes.values(), grace_s=20)


class StatusWatch:
    """The latest ``RecorderStatus`` of each recorder of the hub site."""

    def __init__(self) -> None:
        self.latest: dict[str, RecorderStatus] = {}
        self.arrived: dict[str, int] = {}

    async def take(self, _topic: str, status: RecorderStatus) -> None:
        self.latest[status.recorder] = status
        self.arrived[status.recorder] = self.arrived.get(status.recorder, 0) + 1

    def pattern(self, hub_site: str) -> str:
        return topics.topic(hub_site, Kind.RECORDER, topics.ANY, Stream.STATE)

    async def wait_for(self, recorders: list[str], timeout: float, fresh_after: dict[str, int] | None = None) -> None:
        """Until every recorder has published a status (newer than ``fresh_after``, if given)."""
        base = fresh_after or {}
        deadline = asyncio.get_running_loop().time() + timeout
        while any(self.arrived.get(r, 0) <= base.get(r, 0) for r in recorders):
            if asyncio.get_running_loop().time() > deadline:
                missing = [r for r in recorders if self.arrived.get(r, 0) <= base.get(r, 0)]
                raise TimeoutError(f"no status from recorder(s) {missing} within {timeout:.0f} s")
            await asyncio.sleep(0.1)


def status_bus(host: str, port: int, hub_site: str) -> Bus:
    return Bus(MqttConfig(host=host, port=port), site=hub_site, service="loadcheck", announce=False)


# -- reading back ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesStats:
    count: int
    distinct: int
    low: float
    high: float


def _influxql(url: str, query: str) -> dict[str, Any]:
    address = f"{url}/query?" + urllib.parse.urlencode({"db": "ongrid", "q": query, "epoch": "ns"})
    with urllib.request.urlopen(address, timeout=60) as response:
        return dict(json.loads(response.read()))


def influx_series(url: str, plan: LoadPlan) -> dict[tuple[str, str, str], SeriesStats]:
    """Per (measurement, site, device): count, distinct count, min, max of the sequence field."""
    out: dict[tuple[str, str, str], SeriesStats] = {}
    for measurement, fieldname in SEQUENCE_FIELD.items():
        query = (
            f'SELECT count("{fieldname}"), count(distinct("{fieldname}")), min("{fieldname}"), max("{fieldname}") '
            f'FROM "{measurement}" WHERE "site" =~ /^{plan.prefix}/ GROUP BY "site", "device"'
        )
        result = _influxql(url, query)["results"][0]
        if "error" in result:
            raise RuntimeError(f"InfluxQL error for {measurement}: {result['error']}")
        for series in result.get("series", []):
            tags = series["tags"]
            _time, count, distinct, low, high = series["values"][0]
            out[(measurement, tags["site"], tags["device"])] = SeriesStats(
                int(count), int(distinct), float(low), float(high)
            )
    return out


def sqlite_series(paths: list[Path], plan: LoadPlan) -> dict[tuple[str, str, str], SeriesStats]:
    """The same figures from the recorders' embedded stores, counted across all of them.

    A message delivered to two recorders lands in two files, so here a doubling shows as a count
    above the distinct count.
    """
    values: dict[tuple[str, str, str], list[float]] = {}
    for path in paths:
        if not path.exists():
            continue
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
            rows = db.execute(
                "SELECT measurement, tags, fields FROM points WHERE measurement IN ('inverter', 'meter')"
            ).fetchall()
        for measurement, tags_json, fields_json in rows:
            tags = json.loads(tags_json)
            if not str(tags.get("site", "")).startswith(plan.prefix):
                continue
            value = json.loads(fields_json)[SEQUENCE_FIELD[measurement]]
            values.setdefault((measurement, tags["site"], tags["device"]), []).append(float(value))
    return {key: SeriesStats(len(vals), len(set(vals)), min(vals), max(vals)) for key, vals in values.items()}


def problems(plan: LoadPlan, stored: dict[tuple[str, str, str], SeriesStats], limit: int = 10) -> list[str]:
    """Every way the store differs from "each series holds 0..S-1 exactly once" (first ``limit``)."""
    found: list[str] = []
    expected = SeriesStats(plan.seconds, plan.seconds, 0.0, float(plan.seconds - 1))
    for key in sorted(plan.series()):
        got = stored.get(key)
        if got is None:
            found.append(f"{key}: no points stored")
        elif got != expected:
            found.append(
                f"{key}: {got.count} points, {got.distinct} distinct, values {got.low:g}..{got.high:g} "
                f"(want {plan.seconds} points 0..{plan.seconds - 1})"
            )
    extra = set(stored) - plan.series()
    found.extend(f"{key}: a series the plan never wrote" for key in sorted(extra))
    return found[:limit] + ([f"... and {len(found) - limit} more"] if len(found) > limit else [])


def stored_total(stored: dict[tuple[str, str, str], SeriesStats]) -> int:
    return sum(s.count for s in stored.values())


def _publish_part(
    host: str, port: int, connections: int, prefix: str, plan: LoadPlan, share: int, shares: int, out: Any
) -> None:
    with publisher(host, port, connections, f"{prefix}-{share}") as pub:
        out.put(pub.run(plan, share=share, shares=shares))


def publish_in_processes(
    host: str, port: int, connections: int, prefix: str, plan: LoadPlan, parts: int
) -> PublishReport:
    """The plan split over ``parts`` publisher processes (one Python process cannot publish a few
    thousand homes' 10,000 messages a second and build them too)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_publish_part, args=(host, port, connections, prefix, plan, part, parts, out))
        for part in range(parts)
    ]
    for proc in procs:
        proc.start()
    reports = [out.get(timeout=plan.seconds * 10 + 120) for _ in procs]
    for proc in procs:
        proc.join(30)
    return PublishReport(
        published=sum(r.published for r in reports),
        acked=sum(r.acked for r in reports),
        wall_s=max(r.wall_s for r in reports),
        behind_s=max(r.behind_s for r in reports),
        cpu_s=sum(r.cpu_s for r in reports),
    )


@contextlib.contextmanager
def publisher(host: str, port: int, connections: int, prefix: str) -> Iterator[Publisher]:
    pub = Publisher(host, port, connections, prefix)
    try:
        yield pub
    finally:
        pub.close()


def run_start(seconds_ahead: int = 0) -> datetime:
    """A whole-second UTC start time for the plan's timestamps."""
    now = datetime.now(UTC).replace(microsecond=0)
    return now + timedelta(seconds=seconds_ahead)


# -- one whole run ---------------------------------------------------------------------------

# Mosquitto's default per-client queue (1,000 QoS 1 messages beyond the in-flight window) is half
# a second of this load: a recorder pausing for one slow database write would lose messages. A
# broker for many homes needs a deeper, still bounded, queue (docs/scaling.md): here bounded by
# bytes (2 GB), as deploy/mosquitto does (256 MB), so that recorders on a busy machine that fall
# minutes behind 5,000 homes still lose nothing. Saved rarely: a queue of hundreds of thousands of
# messages rewritten every second (the test broker's autosave) would be the bottleneck measured.
BROKER_CONF = "max_queued_messages 0\nmax_queued_bytes 2000000000\nautosave_interval 3600\n"


def _cpu_of(pids: dict[str, int]) -> dict[str, Any]:
    windows = {name: CpuWindow(pid) for name, pid in pids.items()}
    for window in windows.values():
        window.start()
    return windows


async def run_scale_out(
    *,
    sites: int,
    seconds: int,
    workdir: Path,
    connections: int = 4,
    recorders: int = 2,
    store: str = "auto",
    drain_timeout_s: float = 120.0,
    publisher_processes: int = 1,
) -> dict[str, Any]:
    """Publish ``sites`` x 2 devices x ``seconds`` through a private Mosquitto into a recorder
    group and count what was stored. ``store``: ``influxdb`` (InfluxDB 1.x via ``influxd``),
    ``sqlite`` (the embedded store, one file per recorder) or ``auto`` (influxdb when installed)."""
    if store == "auto":
        store = "influxdb" if influxd_available() else "sqlite"
    run_id = uuid.uuid4().hex[:6]
    plan = LoadPlan(sites=sites, seconds=seconds, prefix=f"l{run_id}s", t0=run_start(5))
    hub = f"hub{run_id}"
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(running_broker(BROKER_CONF))
        influx = stack.enter_context(running_influxd()) if store == "influxdb" else None
        group = RecorderGroup(
            workdir, broker.host, broker.port, hub, count=recorders, influx_url=influx.url if influx else None
        )
        watch = StatusWatch()
        bus = status_bus(broker.host, broker.port, hub)
        async with bus:
            bus.subscribe(watch.pattern(hub), RecorderStatus, watch.take)
            await bus.subscribed(10)
            group.start()
            stack.callback(group.stop)
            try:
                await watch.wait_for(group.ids(), timeout=60)
            except TimeoutError as exc:
                tails = {r: group.log_tail(r) for r in group.ids()}
                raise RuntimeError(f"{exc}; logs: {tails}") from None
            await asyncio.sleep(1.0)  # the status loop starts right after the subscription

            def stored_now() -> dict[tuple[str, str, str], SeriesStats]:
                if influx is not None:
                    return influx_series(influx.url, plan)
                return sqlite_series([group.sqlite_path(r) for r in group.ids()], plan)

            pids = {r: p.pid for r, p in group.processes.items()}
            assert broker.process is not None
            pids["mosquitto"] = broker.process.pid
            if influx is not None and influx.process is not None:
                pids["influxd"] = influx.process.pid
            windows = _cpu_of(pids)
            if publisher_processes > 1:
                wait = (plan.t0 - datetime.now(UTC)).total_seconds()
                if wait > 0:
                    await asyncio.sleep(wait)
                t_start = time.monotonic()
                report = await asyncio.to_thread(
                    publish_in_processes,
                    broker.host,
                    broker.port,
                    connections,
                    f"load{run_id}",
                    plan,
                    publisher_processes,
                )
            else:
                with publisher(broker.host, broker.port, connections, f"load{run_id}") as pub:
                    wait = (plan.t0 - datetime.now(UTC)).total_seconds()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    t_start = time.monotonic()
                    report = await asyncio.to_thread(pub.run, plan)
            t_published = time.monotonic()
            stored = await asyncio.to_thread(stored_now)
            while stored_total(stored) < plan.messages and time.monotonic() - t_published < drain_timeout_s:
                if group.dead():
                    break
                # Counting every series is itself work for the store: less often for many homes.
                await asyncio.sleep(max(1.0, sites / 1000))
                stored = await asyncio.to_thread(stored_now)
            t_stored = time.monotonic()
            cpu = {name: window.stop() for name, window in windows.items()}
            memory = {r: memory_mb(pid) for r, pid in pids.items() if r in group.processes}
            seen = dict(watch.arrived)
            await watch.wait_for(group.ids(), timeout=30, fresh_after=seen)
            written = {r: watch.latest[r].points_written for r in group.ids()}
            statuses_seen = sum(watch.arrived.values())
    elapsed = t_stored - t_start
    load_points = stored_total(stored)
    return {
        "store": "influxdb 1.x (influxd)" if store == "influxdb" else "embedded sqlite (one file per recorder)",
        "sites": sites,
        "devices_per_site": len(DEVICES),
        "seconds": seconds,
        "publisher_connections": connections,
        "publisher_processes": publisher_processes,
        "recorders": recorders,
        "messages_published": report.published,
        "messages_acked_by_broker": report.acked,
        "publisher_behind_schedule_max_s": round(report.behind_s, 3),
        "publish_wall_s": round(report.wall_s, 2),
        "messages_per_s_in": round(report.published / report.wall_s, 1) if report.wall_s else 0.0,
        "points_stored": load_points,
        "points_expected": plan.messages,
        "series_expected": len(plan.series()),
        "series_stored": len(stored),
        "drain_after_publish_s": round(t_stored - t_published, 2),
        "points_per_s_stored": round(load_points / elapsed, 1) if elapsed else 0.0,
        "problems": problems(plan, stored),
        "points_written_per_recorder": written,
        # Rows of the hub site itself (recorder statuses, availability) are in points_written too:
        # at most one per status message seen plus a few availability/event messages.
        "hub_points_at_most": statuses_seen + 4 * recorders,
        "cpu_s": {name: round(value, 2) for name, value in cpu.items()},
        "cpu_pct_of_one_core": {name: round(100 * value / elapsed, 1) for name, value in cpu.items()},
        "publisher_cpu_s": round(report.cpu_s, 2),
        "rss_mb": {r: {"now": round(m[0], 1), "peak": round(m[1], 1)} for r, m in memory.items()},
        "measured_over_s": round(elapsed, 2),
    }
