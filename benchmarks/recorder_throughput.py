"""Recorder throughput into InfluxDB 1.6, in process and from MQTT, and its memory (JSON).

* ``raw_points_per_s``: a plain bulk line-protocol writer (5,000 points per POST /write) into a
  fresh influxd: the server's own ingest ceiling on this machine.
* ``recorder_points_per_s``: the recorder's whole write path in process (batches of messages as
  the bus hands them -> rows -> spool append -> seal/fsync -> POST /write -> segment deleted) for
  the same number of meter readings. ``ratio``: recorder / raw.
* ``mqtt``: ``InverterState`` messages through a private Mosquitto into ``python -m
  services.recorder`` (benchmarks/recorder_mqtt.py): ``burst`` end to end from the first publish
  to the last point stored, with its ratio to raw line protocol of the same rows
  (``raw_inverter_points_per_s``: the mean of one run just before the burst and one just after,
  both reported); ``behind``: 60 s of a neighbourhood's traffic queued in the
  stopped recorder's session, then how fast it catches up and its peak RSS meanwhile;
  ``stock_broker``: the same burst from one publisher through a Mosquitto with its default
  ``max_queued_messages 1000``, which drops what a slow subscriber has not taken: how many stored,
  published at ``--stock-rate`` messages/s (a neighbourhood's rate) and as fast as the broker takes
  them (``stock_broker_unpaced``).

Publishers send pre-encoded frames from plain sockets (benchmarks/recorder_mqtt.py), and the MQTT
runs report the CPU per message of the recorder, Mosquitto, influxd and the publishers, and the
load average, since the machine is shared.
* ``backlog``: with the database unreachable, ``--backlog-minutes`` of traffic at ``--rate``
  messages/s goes into the recorder; RSS before/after (the backlog lives on disk, so memory should
  stay flat), spool size, and how fast the backlog replays once the database is back.

Usage: ``python benchmarks/recorder_throughput.py [--points 100000] [--rate 200] [--backlog-minutes 10]
[--mqtt-messages 100000] [--behind-messages 120000] [--stock-messages 30000] [--stock-rate 10000]
[--skip-mqtt]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.recorder_mqtt import run_behind, run_burst
from services.devtools.devdb import running_influxd
from services.devtools.loadgen import inverter_state
from services.recorder.backends import InfluxV1Writer
from services.recorder.pipeline import Recorder
from services.recorder.points import to_rows
from services.recorder.spool import Spool
from shared.config import InfluxConfig
from shared.messages import MeterRole, MeterState
from shared.ports import free_port
from shared.topics import Kind, Stream, TopicParts

T0 = datetime(2026, 3, 10, tzinfo=UTC)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def meter(i: int, device: str) -> MeterState:
    return MeterState(
        ts=T0 + timedelta(milliseconds=100 * i),
        device=device,
        model="eastron_sdm630",
        role=MeterRole.GRID,
        power_w=float(i % 5000),
        voltage_v=240.0,
        current_a=1.0,
        frequency_hz=50.0,
        import_energy_wh=float(i),
        export_energy_wh=0.0,
    )


def count(url: str, db: str, measurement: str, field: str = "power_w") -> int:
    http = urllib3.PoolManager()
    q = f'SELECT count("{field}") FROM "{measurement}"'
    response = http.request("GET", f"{url}/query?" + urllib.parse.urlencode({"db": db, "q": q}))
    series = json.loads(response.data)["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def raw_bulk(url: str, n: int, kind: str = "meter", database: str = "") -> float:
    """Bulk line protocol of ``n`` rows (made beforehand, not timed), 5,000 per POST /write, into
    a database of its own (fresh: no point overwritten)."""
    http = urllib3.PoolManager()
    database = database or f"raw{kind}"
    http.request("POST", f"{url}/query?q=CREATE+DATABASE+{database}")
    if kind == "meter":
        parts = TopicParts("bench", Kind.METER, "raw", Stream.STATE)
        lines = [row.line for i in range(n) for row in to_rows(parts, meter(i, "raw"))]
    else:
        lines = []
        for i in range(n):
            site, second = i % 100, i // 100
            state = inverter_state(site, second, T0 + timedelta(seconds=second))
            lines += [row.line for row in to_rows(TopicParts(f"r{site}", Kind.INVERTER, "inv1", Stream.STATE), state)]
    started = time.perf_counter()
    for k in range(0, n, 5000):
        body = "\n".join(lines[k : k + 5000]).encode()
        response = http.request("POST", f"{url}/write?db={database}&precision=ns", body=body)
        assert response.status == 204, response.data
    elapsed = time.perf_counter() - started
    field = "power_w" if kind == "meter" else "import_energy_total_wh"
    assert count(url, database, kind, field) == n
    return n / elapsed


async def through_recorder(url: str, n: int, batch_size: int, tmp: Path) -> float:
    backend = InfluxV1Writer(InfluxConfig(api="v1", url=url, database=f"rec{batch_size}"))
    recorder = Recorder(backend, Spool(tmp / f"spool{batch_size}", 10**10), recorder_id="bench", batch_size=batch_size)
    runner = asyncio.create_task(recorder.run())
    topic = "ongrid/bench/meter/rec/state"
    # As the bus hands them over: the model with the bytes it arrived as.
    messages = [(topic, message, message.to_json()) for message in (meter(i, "rec") for i in range(n))]
    started = time.perf_counter()
    for k in range(0, n, 1000):
        # Up to shared.bus.BATCH_MAX at once, then the flusher runs.
        await recorder.handle_batch(messages[k : k + 1000])
        await asyncio.sleep(0)
    await recorder.drained(600)
    elapsed = time.perf_counter() - started
    runner.cancel()
    assert count(url, f"rec{batch_size}", "meter") == n
    return n / elapsed


async def backlog(url: str, rate: int, minutes: float, tmp: Path) -> dict[str, float]:
    dead = InfluxV1Writer(InfluxConfig(api="v1", url=f"http://127.0.0.1:{free_port()}", database="backlog", retries=0))
    spool = Spool(tmp / "backlog", 10**10)
    recorder = Recorder(dead, spool, recorder_id="bench", retry_max_s=0.5)
    runner = asyncio.create_task(recorder.run())
    total = int(rate * minutes * 60)
    before = rss_mb()
    topic = "ongrid/bench/meter/backlog/state"
    for k in range(0, total, 1000):
        await recorder.handle_batch([(topic, meter(i, "backlog"), None) for i in range(k, min(total, k + 1000))])
        await asyncio.sleep(0)
    await recorder.flush()
    during = rss_mb()
    status = recorder.status()
    # The database comes back: point the recorder at the live server and time the replay.
    recorder.backend = InfluxV1Writer(InfluxConfig(api="v1", url=url, database="backlog"))
    started = time.perf_counter()
    await recorder.drained(900)
    replay_s = time.perf_counter() - started
    runner.cancel()
    assert count(url, "backlog", "meter") == total
    return {
        "messages": total,
        "rate_per_s": rate,
        "minutes": minutes,
        "rss_before_mb": round(before, 1),
        "rss_with_backlog_mb": round(during, 1),
        "spool_mb": round(status.backlog_bytes / 1e6, 1),
        "backlog_points": status.backlog_points,
        "replay_points_per_s": round(total / replay_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=200, help="messages/s during the outage")
    parser.add_argument("--backlog-minutes", type=float, default=10.0)
    # 100,000: a burst of 6-10 s, where a 30,000-message one lasted ~2 s, of which the pipeline's
    # filling, its last partial batch and the end's detection were a fixed part.
    parser.add_argument("--mqtt-messages", type=int, default=100_000, help="burst of InverterState messages")
    parser.add_argument("--stock-messages", type=int, default=30_000, help="burst into the stock-config broker")
    parser.add_argument("--behind-messages", type=int, default=120_000, help="queued while the recorder is stopped")
    parser.add_argument("--stock-rate", type=float, default=10_000, help="messages/s into the stock broker")
    parser.add_argument("--skip-mqtt", action="store_true")
    args = parser.parse_args()
    mqtt: dict[str, object] = {}
    with running_influxd() as server, tempfile.TemporaryDirectory() as tmp:
        raw = raw_bulk(server.url, args.points)
        rec500 = asyncio.run(through_recorder(server.url, args.points, 500, Path(tmp)))
        rec5000 = asyncio.run(through_recorder(server.url, args.points, 5000, Path(tmp)))
        held = asyncio.run(backlog(server.url, args.rate, args.backlog_minutes, Path(tmp)))
        if not args.skip_mqtt:
            # Raw line protocol of the same rows into the same influxd just before and just after
            # the burst, the ratio against their mean: on a shared machine raw alone moved
            # 38,600-71,000 rows/s between neighbouring runs, and one side of the burst is not
            # the moment the burst ran (both figures are reported).
            raw_before = raw_bulk(server.url, args.mqtt_messages, "inverter", "rawinverter_before")
            pid = server.process.pid if server.process is not None else None
            burst = run_burst(server.url, "burst", Path(tmp) / "burst", args.mqtt_messages, 100, influx_pid=pid)
            raw_after = raw_bulk(server.url, args.mqtt_messages, "inverter", "rawinverter_after")
            raw_inverter = (raw_before + raw_after) / 2
            mqtt = {
                "raw_inverter_points_per_s": round(raw_inverter),
                "raw_inverter_before_after": [round(raw_before), round(raw_after)],
                "burst": burst,
                "ratio_end_to_end": round(burst["messages_per_s_end_to_end"] / raw_inverter, 3),
                "behind": run_behind(server.url, "behind", Path(tmp) / "behind", args.behind_messages, 2000),
                "stock_broker": run_burst(
                    server.url,
                    "stock",
                    Path(tmp) / "stock",
                    args.stock_messages,
                    1,
                    stock=True,
                    publishers=1,
                    rate=args.stock_rate,
                    influx_pid=pid,
                ),
                "stock_broker_unpaced": run_burst(
                    server.url,
                    "stock2",
                    Path(tmp) / "stock2",
                    args.stock_messages,
                    1,
                    stock=True,
                    publishers=1,
                    influx_pid=pid,
                ),
            }
    print(
        json.dumps(
            {
                "benchmark": "recorder_throughput",
                "influxdb": "1.6 (Debian influxd, local)",
                "cpus": os.cpu_count(),
                "points": args.points,
                "raw_points_per_s": round(raw),
                "recorder_points_per_s": {"batch_500": round(rec500), "batch_5000": round(rec5000)},
                "ratio": {"batch_500": round(rec500 / raw, 3), "batch_5000": round(rec5000 / raw, 3)},
                "backlog": held,
                "mqtt": mqtt,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
