"""Bridge figures (JSON): transactions per poll cycle per map, and bridge CPU per 1,000 polls.

* ``transactions``: what a bridge poll costs on the wire per map: the engine's coalesced plan of
  every group the published state needs (read together each poll) against one read per point.
  The per-group and decode-only figures come from benchmarks/register_coalescing.py (reused).
* ``cpu``: the inverter-bridge and the meter-bridge polling the simulator (a child process) over
  Modbus TCP and RTU (socat pty): process CPU seconds of the bridge per 1,000 polls, including
  the Link, decoding, the state model and its JSON (what would go to MQTT), excluding the
  simulator's own CPU.

Run: ``.venv/bin/python benchmarks/bridge_cpu.py [--polls 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.register_coalescing import measure
from services.devtools.endpoints import read_endpoints
from services.devtools.processes import Child
from services.inverter_bridge.service import POLL_GROUPS, make_bridge
from services.meter_bridge.service import MeterBridge
from shared.bridge import MapPoller
from shared.config import load_config
from shared.messages import Message
from shared.modbus import close_links, open_link
from shared.ports import free_port
from shared.registers import available_maps, load_map, naive_reads

REPO = Path(__file__).resolve().parents[1]


class JsonSink:
    """Stands in for the MQTT bus: serialises what would be published, and counts it."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    async def publish(self, topic: str, message: Message) -> bool:
        self.messages += 1
        self.bytes += len(message.to_json())
        return True

    def subscribe(self, *args: Any, **kwargs: Any) -> None:
        pass


def transactions() -> dict[str, Any]:
    out = {}
    for name in available_maps():
        regmap = load_map(name)
        groups = (
            list(POLL_GROUPS)
            if regmap.kind == "inverter"
            else [g for g in regmap.groups if regmap.readable_points({g})]
        )
        poller = MapPoller(name, regmap, None, 1, {g: 1.0 for g in groups})  # type: ignore[arg-type]
        points = regmap.readable_points(set(groups))
        engine = measure(regmap, 200)
        out[name] = {
            "bridge_poll_groups": groups,
            "bridge_poll_transactions": len(poller.plan(groups)),
            "bridge_poll_one_per_point": len(naive_reads(regmap, points)),
            "all_points_coalesced": engine["transactions_coalesced"],
            "all_points_one_per_point": engine["transactions_one_per_point"],
            "decode_cpu_s_per_1000_polls": engine["decode_cpu_s_per_1000_polls"],
        }
    return out


def scenario(tmp: Path) -> tuple[Path, dict[str, Any]]:
    data = yaml.safe_load((REPO / "deploy" / "scenarios" / "seed-house.yaml").read_text())
    sim = data["simulator"]
    tcp, control = free_port(), free_port()
    sim.update(speed=1, run_dir=str(tmp), start="2026-06-01T12:00:00+01:00")
    sim["devices"] = [
        {"id": "inv", "role": "inverter", "model": "sofar_me3000sp",
         "listen": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": tcp}},
        {"id": "grid", "role": "meter", "model": "eastron_sdm120", "meter": "grid",
         "listen": {"kind": "modbus_rtu", "device": str(tmp / "grid"), "baudrate": 115200}},
    ]  # fmt: skip
    sim["control"] = {"host": "127.0.0.1", "port": control, "mqtt": False}
    data["inverters"] = [{"id": "inv1", "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": tcp},
                          "state_dir": str(tmp / "state")}]  # fmt: skip
    line = {"kind": "modbus_rtu", "device": str(tmp / "grid"), "baudrate": 115200}
    data["meters"] = [{"id": "grid", "model": "eastron_sdm120", "role": "grid", "transport": line}]
    path = tmp / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, data


async def cpu(path: Path, polls: int) -> dict[str, Any]:
    cfg = load_config(path)
    sink = JsonSink()
    inverter = cfg.inverters[0]
    bridges: dict[str, Any] = {
        "inverter_modbus_tcp": make_bridge(inverter, cfg.site, sink),  # type: ignore[arg-type]
        "meter_sdm120_rtu_pty": MeterBridge(cfg.meters[0], cfg.site, sink, open_link(cfg.meters[0].transport),  # type: ignore[arg-type]
                                            load_map(cfg.meters[0].model)),
    }  # fmt: skip
    out = {}
    for name, bridge in bridges.items():
        if hasattr(bridge, "identity_sent"):
            bridge.identity_sent = True  # the one-off identity read is not part of a poll
        await bridge.poll_once()  # connect outside the measurement
        # Back-to-back polls: every group is due on each one, as at the configured poll_s.
        schedule = bridge.poller.schedule
        schedule.intervals = dict.fromkeys(schedule.intervals, 1e-9)
        failed = 0
        link = bridge.poller.link
        tx0, wall0, cpu0 = link.transactions, time.perf_counter(), time.process_time()
        for _ in range(polls):
            failed += (await bridge.poll_once()) is None
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
        out[name] = {
            "polls": polls,
            "failed_polls": failed,
            "transactions_per_poll": round((link.transactions - tx0) / polls, 3),
            "cpu_s_per_1000_polls": round(cpu_s * 1000 / polls, 3),
            "wall_s_per_poll": round(wall_s / polls, 5),
        }
    await close_links()
    out["published_bytes"] = sink.bytes
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--polls", type=int, default=1000)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "benchmark": "bridge_cpu",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "transactions": transactions(),
    }
    with tempfile.TemporaryDirectory(prefix="ongrid-bench-") as tmp:
        path, _ = scenario(Path(tmp))
        log = Path(tmp) / "sim.log"
        sim = Child("services.simulator", "--config", str(path), "--no-mqtt", log=log, pipe_stdout=True)
        try:
            read_endpoints(sim.start(), timeout=60, log=sim.log_path)
            result["cpu"] = asyncio.run(cpu(path, args.polls))
        finally:
            sim.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
