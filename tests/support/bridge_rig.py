"""Harness for the bridge process tests (no tests here): the simulator and the bridges as real
processes, a scenario on free ports, the simulator's HTTP side channel, and an MQTT inbox.

The simulator's physics steps are made coarse (``step_s``) so that its state stands still between
steps; a reading is compared with ground truth only when the truth taken just before and just
after the reading has the same simulated time, i.e. no step happened in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from tests.support import Broker, Child, endpoint_map, free_port, read_endpoints

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "deploy" / "scenarios" / "seed-house.yaml"
PERFECT_CT = {"accuracy_pct": 0, "floor_w": 0, "noise_w": 0, "starting_current_a": 0, "wander_w": 0}
LOGGER_SERIAL = 2712345678
# How long a test waits for something the fleet will do: generous, because a shared 2-core machine
# under load can take tens of seconds to start a process or answer a poll. A bound, not a pace.
WAIT_S = 120.0


def scenario(
    tmp: Path,
    broker: Broker,
    *,
    speed: float = 20.0,
    step_s: float = 60.0,
    passive_timeout_s: float = 60.0,
    start: str = "2026-06-01T12:00:00+01:00",
) -> dict[str, Any]:
    """The seed scenario on free ports and private ptys, with perfect CTs (ground truth is exact)."""
    data = yaml.safe_load(SEED.read_text())
    data["site"] = "t" + uuid.uuid4().hex[:10]
    data["mqtt"] = {"host": broker.host, "port": broker.port}
    sim = data["simulator"]
    sim.update(speed=speed, step_s=step_s, start=start, run_dir=str(tmp))
    sim["inverter"]["passive_timeout_s"] = passive_timeout_s
    sim["inverter"]["ct"] = PERFECT_CT
    sim["meters"] = [
        {"id": "grid", "position": "grid", "error": PERFECT_CT},
        {"id": "pv", "position": "pv", "error": PERFECT_CT},
    ]
    ports = {"inv-tcp": free_port(), "inv-v5": free_port(), "pv-meter": free_port(), "control": free_port()}
    sim["devices"] = [
        {"id": "inv-tcp", "role": "inverter", "model": "sofar_me3000sp",
         "listen": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": ports["inv-tcp"]}},
        {"id": "inv-rtu", "role": "inverter", "model": "sofar_me3000sp",
         "listen": {"kind": "modbus_rtu", "device": str(tmp / "inverter")}},
        {"id": "inv-v5", "role": "inverter", "model": "sofar_me3000sp",
         "listen": {"kind": "solarman_v5", "host": "127.0.0.1", "port": ports["inv-v5"],
                    "logger_serial": LOGGER_SERIAL}},
        {"id": "grid", "role": "meter", "model": "eastron_sdm120", "meter": "grid",
         "listen": {"kind": "modbus_rtu", "device": str(tmp / "grid-meter")}},
        {"id": "pv-meter", "role": "meter", "model": "eastron_sdm630", "meter": "pv",
         "listen": {"kind": "modbus_rtu", "device": str(tmp / "pv-meter")}},
    ]  # fmt: skip
    sim["control"] = {"host": "127.0.0.1", "port": ports["control"], "truth_interval_s": 1.0, "mqtt": False}
    data["inverters"] = []
    data["meters"] = []
    data["_ports"] = ports
    return data


def transports(data: dict[str, Any], tmp: Path) -> dict[str, dict[str, Any]]:
    """How a bridge reaches each simulated endpoint."""
    ports = data["_ports"]
    return {
        "modbus_tcp": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": ports["inv-tcp"], "unit": 1,
                       "timeout_s": 1, "retries": 1},
        "modbus_rtu": {"kind": "modbus_rtu", "device": str(tmp / "inverter"), "baudrate": 9600, "unit": 1,
                       "timeout_s": 1, "retries": 1},
        "solarman_v5": {"kind": "solarman_v5", "host": "127.0.0.1", "port": ports["inv-v5"],
                        "logger_serial": LOGGER_SERIAL, "unit": 1, "timeout_s": 1, "retries": 1},
        "grid_meter": {"kind": "modbus_rtu", "device": str(tmp / "grid-meter"), "baudrate": 9600, "unit": 1,
                       "timeout_s": 1, "retries": 1},
        "pv_meter": {"kind": "modbus_rtu", "device": str(tmp / "pv-meter"), "baudrate": 9600, "unit": 1,
                     "timeout_s": 1, "retries": 1},
    }  # fmt: skip


def write_config(data: dict[str, Any], path: Path) -> Path:
    clean = {k: v for k, v in data.items() if not k.startswith("_")}
    path.write_text(yaml.safe_dump(clean))
    return path


def start_service(module: str, config: Path, log: Path) -> Child:
    """A service (``services.meter_bridge`` ...) as a child process, its output in ``log``."""
    child = Child(module, "--config", str(config), log=log)
    child.start()
    return child


class Simulator:
    """The simulator as a child process, without MQTT; its endpoints as it announced them."""

    def __init__(self, config: Path, log: Path) -> None:
        self.child = Child("services.simulator", "--config", str(config), "--no-mqtt", log=log, pipe_stdout=True)
        try:
            self.endpoints = endpoint_map(read_endpoints(self.child.start(), timeout=60, log=log))
        except RuntimeError:
            self.child.stop()
            raise
        self.base = self.endpoints["control"]

    def stop(self) -> None:
        self.child.stop()

    def output(self) -> str:
        return self.child.output()

    def http(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.base + path, method=method, data=None if body is None else json.dumps(body).encode()
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    async def truth(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.http, "GET", "/truth")

    async def fault(self, device: str, body: dict[str, Any] | None) -> Any:
        if body is None:
            return await asyncio.to_thread(self.http, "POST", f"/faults/{device}/clear", {})
        return await asyncio.to_thread(self.http, "POST", f"/faults/{device}", body)


@dataclass
class Inbox:
    """Everything published under the site, in arrival order."""

    messages: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    client: aiomqtt.Client | None = None

    async def wait_for(
        self,
        topic: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda m: True,
        within_s: float = WAIT_S,
        after: int = 0,
    ) -> dict[str, Any]:
        async def found() -> dict[str, Any]:
            async with self.arrived:
                seen = after
                while True:
                    for t, m, _ in self.messages[seen:]:
                        if t == topic and predicate(m):
                            return m
                    seen = len(self.messages)
                    await self.arrived.wait()

        return await asyncio.wait_for(found(), within_s)

    async def wait_count(self, topic: str, n: int, after: int = 0, within_s: float = WAIT_S) -> list[dict[str, Any]]:
        """Until ``n`` messages on ``topic`` arrived after ``after``: a count waited for, not slept for."""

        async def counted() -> list[dict[str, Any]]:
            async with self.arrived:
                while len(found := self.all(topic, after)) < n:
                    await self.arrived.wait()
                return found

        return await asyncio.wait_for(counted(), within_s)

    def mark(self) -> int:
        return len(self.messages)

    def all(self, topic: str, after: int = 0) -> list[dict[str, Any]]:
        return [m for t, m, _ in self.messages[after:] if t == topic]

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        assert self.client is not None
        await self.client.publish(topic, payload, qos=qos)


@contextlib.asynccontextmanager
async def listening(broker: Broker, site: str) -> AsyncIterator[Inbox]:
    inbox = Inbox()
    async with aiomqtt.Client(broker.host, broker.port) as client:
        inbox.client = client
        await client.subscribe(f"ongrid/{site}/#", qos=1)

        async def pump() -> None:
            async for message in client.messages:
                payload = bytes(message.payload or b"")
                if not payload:
                    continue
                async with inbox.arrived:
                    inbox.messages.append((str(message.topic), json.loads(payload), time.time()))
                    inbox.arrived.notify_all()

        task = asyncio.create_task(pump())
        try:
            yield inbox
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


async def reading_at_truth(
    sim: Simulator, inbox: Inbox, topic: str, *, attempts: int = 10
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A reading taken while the simulated house stood still, with the truth of that moment."""
    for _ in range(attempts):
        before = await sim.truth()
        read_after = datetime.now(UTC)
        mark = inbox.mark()
        reading = await inbox.wait_for(
            topic,
            lambda m, t=read_after: parse_ts(m["ts"]) > t,
            within_s=60,
            after=mark,  # type: ignore[misc]
        )
        after = await sim.truth()
        # load_w > 0: the house has stepped at least once (before that every flow reads 0).
        if before["sim_time"] == after["sim_time"] and before["load_w"] > 0:
            return reading, before
    raise AssertionError(f"the simulator stepped during every one of {attempts} readings")
