"""The recorder's MQTT path, as a process: Mosquitto -> ``python -m services.recorder`` -> InfluxDB.

Not a benchmark itself: ``recorder_throughput.py`` uses it.

* ``burst``: the recorder is running and subscribed; publisher processes send N ``InverterState``
  messages (QoS 1, from ``devices`` inverters) as fast as the broker takes them. End to end is
  from the first publish to the last point readable in InfluxDB, checked by count.
* ``behind``: the recorder is stopped while N messages queue in its persistent session (N = 60 s
  of a neighbourhood's traffic), then started: how fast it catches up and its peak memory while
  it is that far behind.
* a stock-config broker (``max_queued_messages 1000``, ``max_inflight_messages 20``, as Debian's
  package and the Home Assistant add-on ship it) silently drops what a subscriber has not taken:
  ``stored`` says how many of the burst survived.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from services.devtools.loadgen import inverter_state
from services.devtools.localbroker import Broker, running_broker
from services.devtools.procstats import cpu_seconds, memory_mb
from shared import topics

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 3, 10, tzinfo=UTC)
# The project's broker config (deploy/mosquitto) bounds a session's queue by bytes; the
# benchmark broker saves its database rarely so a large queue is not rewritten every second.
PROJECT_CONF = "autosave_interval 3600\n"
# Mosquitto's defaults, restored over the project's settings (later lines win).
# The recorder's recorder.batch_size, as docs/scaling.md advises for many homes: one request
# (and one InfluxDB WAL fsync) per 5,000 rows. Measured against 1,000 on 2026-11-30: 30,000-message
# burst 9,500-12,100 messages/s vs 8,300-9,400, and 111 MB instead of 123 MB while 60 s behind.
BATCH_SIZE = 5000
STOCK_CONF = "max_queued_messages 1000\nmax_queued_bytes 0\nmax_inflight_messages 20\nautosave_interval 3600\n"


def messages(n: int, devices: int) -> list[tuple[str, bytes]]:
    """``n`` inverter states: ``devices`` sites with one inverter each, one message a second each;
    each carries its second in ``import_energy_total_wh`` so the store can be checked."""
    out = []
    for i in range(n):
        site, second = i % devices, i // devices
        state = inverter_state(site, second, T0 + timedelta(seconds=second))
        out.append((topics.inverter_state(f"b{site:04d}", "inv1"), state.to_json()))
    return out


def _varint(n: int) -> bytes:
    """MQTT Variable Byte Integer (MQTT 3.1.1 section 2.2.3)."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _frame(header: int, body: bytes) -> bytes:
    return bytes([header]) + _varint(len(body)) + body


def _publish_frame(topic: str, payload: bytes, mid: int) -> bytes:
    """A QoS 1 PUBLISH of MQTT 3.1.1 (section 3.3)."""
    name = topic.encode()
    return _frame(0x32, len(name).to_bytes(2, "big") + name + mid.to_bytes(2, "big") + payload)


def _connect_frame(client_id: str) -> bytes:
    """CONNECT, MQTT 3.1.1 (section 3.1): clean session, keepalive 60 s, no will, no login."""
    name = client_id.encode()
    return _frame(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c" + len(name).to_bytes(2, "big") + name)


def _publish_share(
    host: str,
    port: int,
    frames: list[bytes],
    name: str,
    start_at: float,
    out: Any,
    rate: float | None = None,
    window: int = 2000,
) -> None:
    """One publisher process sending pre-encoded QoS 1 PUBLISH frames (MQTT 3.1.1) on a plain
    socket, at most ``window`` unacknowledged (and at most ``rate`` a second), then waiting for
    every PUBACK. Hand-encoded so the
    benchmark measures the recorder and the broker, not a Python MQTT client's per-message cost
    (paho's publish() took more CPU per message than the recorder; see docs/recorder.md)."""
    sock = socket.create_connection((host, port))
    sock.sendall(_connect_frame(name))
    connack = sock.recv(4)
    if len(connack) != 4 or connack[0] != 0x20 or connack[3] != 0:
        raise RuntimeError(f"{name}: CONNACK {connack!r}")
    cpu0 = time.process_time()
    time.sleep(max(0.0, start_at - time.time()))
    acked = 0
    pending = b""

    def read_acks(block: bool) -> None:
        nonlocal acked, pending
        sock.setblocking(block)
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        finally:
            sock.setblocking(True)
        if not data:
            raise RuntimeError(f"{name}: broker closed the connection")
        data = pending + data
        whole = len(data) - len(data) % 4  # PUBACK: 4 bytes (0x40, 2, packet id)
        acked += whole // 4
        pending = data[whole:]

    sent = 0
    for k in range(0, len(frames), 100):
        chunk = frames[k : k + 100]
        while sent - acked + len(chunk) > window:
            read_acks(True)
        if rate:
            time.sleep(max(0.0, start_at + sent / rate - time.time()))
        sock.sendall(b"".join(chunk))
        sent += len(chunk)
        read_acks(False)
    while acked < sent:
        read_acks(True)
    out.put((name, acked, time.time(), time.process_time() - cpu0))
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()


def publish(
    host: str, port: int, items: list[tuple[str, bytes]], publishers: int = 2, rate: float | None = None
) -> dict[str, float]:
    """Publish from ``publishers`` processes at once, as fast as the broker takes them or at
    ``rate`` messages/s in all; returns start time (epoch s), acked, end and the publishers' CPU
    seconds. Frames are encoded before the clock starts."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    shares = [
        [_publish_frame(topic, payload, 1 + j % 65535) for j, (topic, payload) in enumerate(items[k::publishers])]
        for k in range(publishers)
    ]
    start_at = time.time() + 1.5  # every publisher connected before the clock starts
    procs = [
        ctx.Process(
            target=_publish_share,
            args=(host, port, shares[k], f"bench-pub-{k}", start_at, out, rate / publishers if rate else None),
        )
        for k in range(publishers)
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(30)
    return {
        "start": start_at,
        "acked": sum(r[1] for r in results),
        "end": max(r[2] for r in results),
        "cpu_s": sum(r[3] for r in results),
    }


def count(url: str, database: str = "ongrid") -> int:
    q = 'SELECT count("import_energy_total_wh") FROM "inverter" WHERE "site" =~ /^b/'
    address = f"{url}/query?" + urllib.parse.urlencode({"db": database, "q": q})
    with urllib.request.urlopen(address, timeout=60) as response:
        series = json.loads(response.read())["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


class RecorderProcess:
    """``python -m services.recorder`` recording every site into InfluxDB 1.x."""

    def __init__(self, workdir: Path, broker: Broker, influx_url: str, batch_size: int, database: str) -> None:
        self.workdir = workdir
        self.config = workdir / "ongrid.yaml"
        workdir.mkdir(parents=True, exist_ok=True)
        data = {
            "site": "hub",
            "mqtt": {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.1, "reconnect_max_s": 1.0},
            "recorder": {
                "id": "bench",
                "all_sites": True,
                "spool_dir": str(workdir / "spool"),
                "batch_size": batch_size,
                "flush_interval_s": 0.5,
                "status_interval_s": 1.0,
                "stats_interval_s": 86_400,
            },
            "influxdb": {"api": "v1", "url": influx_url, "database": database},
        }
        self.config.write_text(yaml.safe_dump(data))
        self.process: subprocess.Popen[bytes] | None = None
        self.database = database

    def start(self) -> None:
        log = open(self.workdir / "recorder.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.recorder", "--config", str(self.config)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_subscribed(self, timeout: float = 60.0) -> None:
        """Until the recorder's retained ``online`` is on the broker (sent after it subscribed)."""
        seen = threading.Event()
        host, port = self._broker_address()

        def on_message(_c: Any, _u: Any, message: Any) -> None:
            if b'"online"' in message.payload:
                seen.set()

        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.on_message = on_message
        client.connect(host, port)
        client.subscribe(topics.service_availability("hub", "recorder"), qos=1)
        client.loop_start()
        try:
            deadline = time.monotonic() + timeout
            while not seen.wait(0.2):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"recorder not online after {timeout} s: {self.log_tail()}")
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"recorder exited: {self.log_tail()}")
        finally:
            client.loop_stop()
            client.disconnect()
        time.sleep(0.5)

    def _broker_address(self) -> tuple[str, int]:
        mqtt = yaml.safe_load(self.config.read_text())["mqtt"]
        return str(mqtt["host"]), int(mqtt["port"])

    def clear_online(self) -> None:
        host, port = self._broker_address()
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.connect(host, port)
        client.loop_start()
        client.publish(topics.service_availability("hub", "recorder"), b"", qos=1, retain=True).wait_for_publish(10)
        client.loop_stop()
        client.disconnect()

    def log_tail(self) -> str:
        path = self.workdir / "recorder.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


# How the end of a run is seen. A count of every stored point costs influxd 14-22 ms of CPU at
# 100,000 points (a count of the last second's alone ~10 ms: the cost is per series, not per
# point); polled every 0.2 s as before 2026-11-30, that took ~15 % of influxd's CPU during a burst,
# which the raw baseline it is compared with does not pay while timed, and it saw the end up to
# 0.2 s late. So the polls are spaced by what is left at the rate so far (half of it, 0.05-0.5 s):
# a handful during a burst, then every 0.05 s near its end.
POLL_MIN_S = 0.05
POLL_MAX_S = 0.5


def _wait_stored(
    url: str, n: int, recorder: RecorderProcess, quiet_s: float, timeout_s: float, since: float
) -> dict[str, Any]:
    """Poll the store until ``n`` points are in, or nothing new arrived for ``quiet_s``; track RSS.
    ``since``: when the run started (epoch s), for the rate that spaces the polls."""
    peak_rss = 0.0
    got, last_change, last = 0, time.monotonic(), -1
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            peak_rss = max(peak_rss, memory_mb(recorder.pid)[0])
        got = count(url, recorder.database)
        now = time.monotonic()
        if got != last:
            last, last_change = got, now
        if got >= n or now - last_change > quiet_s:
            break
        rate = got / max(1e-3, time.time() - since)
        left_s = (n - got) / rate if rate > 0 else POLL_MAX_S
        time.sleep(min(POLL_MAX_S, max(POLL_MIN_S, left_s / 2)))
    return {"stored": got, "at": time.time(), "peak_rss_mb": peak_rss}


def run_burst(
    influx_url: str,
    database: str,
    workdir: Path,
    n: int,
    devices: int,
    *,
    stock: bool = False,
    publishers: int = 2,
    batch_size: int = BATCH_SIZE,
    influx_pid: int | None = None,
    rate: float | None = None,
) -> dict[str, Any]:
    items = messages(n, devices)
    with running_broker(STOCK_CONF if stock else PROJECT_CONF) as broker:
        recorder = RecorderProcess(workdir, broker, influx_url, batch_size, database)
        recorder.start()
        try:
            recorder.wait_subscribed()
            assert broker.process is not None
            pids = {"recorder": recorder.pid, "mosquitto": broker.process.pid}
            if influx_pid is not None:
                pids["influxd"] = influx_pid
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            load0 = os.getloadavg()[0]
            sent = publish(broker.host, broker.port, items, publishers, rate)
            stored = _wait_stored(influx_url, n, recorder, 10.0 if stock else 30.0, 600, sent["start"])
            cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
            load1 = os.getloadavg()[0]
            hwm = memory_mb(recorder.pid)[1]
        finally:
            recorder.stop()
    elapsed = stored["at"] - sent["start"]
    per_message = {
        f"{name}_cpu_us_per_message": round(1e6 * s / max(1, stored["stored"]), 1) for name, s in cpu.items()
    }
    per_message["publishers_cpu_us_per_message"] = round(1e6 * sent["cpu_s"] / max(1, n), 1)
    return {
        "broker": "stock mosquitto config (max_queued_messages 1000)" if stock else "project mosquitto config",
        "messages": n,
        "devices": devices,
        "publishers": publishers,
        "publish_rate_per_s": rate or "as fast as the broker takes them",
        "acked_by_broker": sent["acked"],
        "publish_s": round(sent["end"] - sent["start"], 2),
        "stored": stored["stored"],
        "end_to_end_s": round(elapsed, 2),
        "messages_per_s_end_to_end": round(stored["stored"] / elapsed) if elapsed > 0 else 0,
        "recorder_cpu_s": round(cpu["recorder"], 2),
        **per_message,
        "recorder_rss_peak_mb": round(max(stored["peak_rss_mb"], hwm), 1),
        "load_1min_before_after": [round(load0, 2), round(load1, 2)],
    }


def run_behind(
    influx_url: str,
    database: str,
    workdir: Path,
    n: int,
    devices: int,
    *,
    publishers: int = 2,
    batch_size: int = BATCH_SIZE,
) -> dict[str, Any]:
    """``n`` messages queue in the stopped recorder's session; then it starts and catches up."""
    items = messages(n, devices)
    with running_broker(PROJECT_CONF) as broker:
        recorder = RecorderProcess(workdir, broker, influx_url, batch_size, database)
        recorder.start()
        try:
            recorder.wait_subscribed()  # the persistent session exists from here on
            recorder.stop()
            recorder.clear_online()
            sent = publish(broker.host, broker.port, items, publishers)
            started = time.time()
            recorder.start()
            recorder.wait_subscribed()
            online = time.time()
            stored = _wait_stored(influx_url, n, recorder, 30.0, 900, online)
            cpu = cpu_seconds(recorder.pid)
            hwm = memory_mb(recorder.pid)[1]
        finally:
            recorder.stop()
    catch_up = stored["at"] - online
    return {
        "messages_queued": n,
        "acked_by_broker": sent["acked"],
        "stored": stored["stored"],
        "start_to_online_s": round(online - started, 2),
        "catch_up_s": round(catch_up, 2),
        "messages_per_s_catching_up": round(stored["stored"] / catch_up) if catch_up > 0 else 0,
        "recorder_cpu_s_incl_start": round(cpu, 2),
        "recorder_rss_peak_mb": round(max(stored["peak_rss_mb"], hwm), 1),
    }
