"""Scale-out: 1,000 sites (an inverter and a grid meter each, one state message a second per
device) for 60 s through Mosquitto into two recorder processes sharing an MQTT 5 subscription
group, into InfluxDB 1.x (``influxd``; the embedded store when it is not installed). Prints JSON.

What it shows: messages/s in, points/s stored, whether every point was stored exactly once
(``problems`` empty; per series exactly the values 0..S-1), the split between the recorders, and
CPU (% of one core over the run) and RSS of each recorder, the broker and the database.

Usage: ``python benchmarks/scale_out.py [--sites 1000] [--seconds 60] [--recorders 2]
[--connections 4] [--store auto|influxdb|sqlite] [--publisher-processes 1] [--drain-timeout 600]``

5,000 sites (10,000 messages/s): ``--sites 5000 --publisher-processes 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.devtools.loadgen import run_scale_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--recorders", type=int, default=2)
    parser.add_argument("--connections", type=int, default=4, help="publisher MQTT connections")
    parser.add_argument("--store", choices=("auto", "influxdb", "sqlite"), default="auto")
    parser.add_argument("--publisher-processes", type=int, default=1, help="split the load generator (5,000 sites: 3)")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="s to wait for the store after publishing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ongrid-scale-") as tmp:
        result = asyncio.run(
            run_scale_out(
                sites=args.sites,
                seconds=args.seconds,
                workdir=Path(tmp),
                connections=args.connections,
                recorders=args.recorders,
                store=args.store,
                publisher_processes=args.publisher_processes,
                drain_timeout_s=args.drain_timeout,
            )
        )
    result["exactly_once"] = not result["problems"]
    print(json.dumps({"benchmark": "scale_out", **result}, indent=2))


if __name__ == "__main__":
    main()
