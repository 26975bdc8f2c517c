"""The recorder's CPU per message, stage by stage, in one process (JSON).

The stages of ``python -m services.recorder`` taking ``InverterState`` messages from MQTT, each
timed alone on the same 20,000 messages (CPU time of this process, the best of ``--repeat``, so a
busy machine moves the figures less than wall time would):

* ``mqtt_read``: the bytes Mosquitto sends (MQTT 5 PUBLISH, QoS 1, no properties) cut into
  packets and decoded (shared/mqttframes.py), in 256 kB reads;
* ``dispatch_and_validate``: the bus's batch dispatch (topic matching, the contract's model,
  pydantic's ``model_validate_json``, the joined PUBACKs), the handler doing nothing;
* ``validate``: ``model_validate_json`` alone (part of the line above);
* ``rows``: message -> rows with their line protocol (services/recorder/points.py, rows.py);
* ``spool``: append in batches of 1,000 and seal (fsync) each;
* ``http_write``: ``POST /write`` of the rows' line protocol to a local influxd, 1,000 rows a
  request: the recorder's CPU only (influxd's own CPU is not in it).

Usage: ``python benchmarks/recorder_stages.py [--messages 20000] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.recorder_mqtt import messages
from services.devtools.devdb import running_influxd
from services.recorder.backends import InfluxV1Writer
from services.recorder.points import to_rows
from services.recorder.rows import Row
from services.recorder.spool import Spool
from shared.bus import Bus
from shared.config import InfluxConfig, MqttConfig
from shared.contract import model_for_topic
from shared.mqttframes import CHUNK, decode_publish, split
from shared.topics import parse


def v5_publish(topic: str, payload: bytes, mid: int) -> bytes:
    """A QoS 1 PUBLISH as Mosquitto sends it to an MQTT 5 subscriber: no properties."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + mid.to_bytes(2, "big") + b"\x00" + payload
    length, size = bytearray(), len(body)
    while True:
        byte, size = size & 0x7F, size >> 7
        length.append(byte | (0x80 if size else 0))
        if not size:
            break
    return b"\x32" + bytes(length) + body


def best(repeat: int, n: int, work: Callable[[], Any]) -> float:
    """µs of CPU per message, the least of ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return round(1e6 * min(times) / n, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n = args.messages
    items = messages(n, 100)
    stream = b"".join(v5_publish(topic, payload, 1 + i % 65535) for i, (topic, payload) in enumerate(items))

    def mqtt_read() -> None:
        rest = b""
        for start in range(0, len(stream), CHUNK):
            data = rest + stream[start : start + CHUNK]
            frames, used = split(data)
            for header, begin, end in frames:
                decode_publish(header, data, begin, end, True)
            rest = data[used:]

    async def dispatch() -> float:
        bus = Bus(MqttConfig(), site="bench", service="recorder", persistent_session=True)

        async def handler(_batch: list[tuple[str, Any, bytes]]) -> None:
            return None

        bus.subscribe_batch("ongrid/+/#", model_for_topic, handler)
        raw: list[Any] = [(topic, payload, None) for topic, payload in items]
        started = time.process_time()
        for k in range(0, n, 1000):
            await bus._dispatch_batch(raw[k : k + 1000])
        return time.process_time() - started

    model = model_for_topic(items[0][0])
    assert model is not None
    validated = [(parse(topic), model.model_validate_json(payload), payload) for topic, payload in items]
    rows: list[Row] = [row for parts, message, payload in validated for row in to_rows(parts, message, payload)]
    tmp = Path(tempfile.mkdtemp(prefix="recorder-stages-"))

    def spool_once() -> None:
        spool = Spool(tmp / f"spool{time.monotonic_ns()}", 10**10)
        for k in range(0, len(rows), 1000):
            spool.append(rows[k : k + 1000])
            segment = spool.seal()
            assert segment is not None
            spool.done(segment)

    result: dict[str, Any] = {
        "mqtt_read": best(args.repeat, n, mqtt_read),
        # asyncio.run's own start is outside the timed part; what is timed is the dispatch.
        "dispatch_and_validate": round(min(1e6 * asyncio.run(dispatch()) / n for _ in range(args.repeat)), 2),
        "validate": best(args.repeat, n, lambda: [model.model_validate_json(p) for _t, p in items]),
        "rows": best(args.repeat, n, lambda: [to_rows(parts, m, payload) for parts, m, payload in validated]),
        "spool": best(args.repeat, n, spool_once),
    }
    with running_influxd() as server:
        writer = InfluxV1Writer(InfluxConfig(api="v1", url=server.url, database="stages"))
        writer.write(rows[:10])

        def write_all() -> None:
            for k in range(0, len(rows), 1000):
                writer.write(rows[k : k + 1000])

        result["http_write"] = best(args.repeat, n, write_all)
        writer.close()
    stages = ("mqtt_read", "dispatch_and_validate", "rows", "spool", "http_write")
    print(
        json.dumps(
            {
                "benchmark": "recorder_stages",
                "messages": n,
                "rows_per_message": len(rows) / n,
                "cpu_us_per_message": result,
                "total_us": round(sum(result[s] for s in stages), 1),
                "load_1min": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
