"""The fault suite's fleet: a private Mosquitto, an InfluxDB 1.x, the simulator and every service.

One fleet is shared by the fault tests (see conftest.py); each test breaks one thing, checks how
the fleet copes, and leaves it healthy again for the next. Processes are started by
``services.devtools.demo.Fleet`` from a copy of the seed scenario with free ports and ptys
(``relocate_scenario``), tuned for fast failure detection: short polls, short Modbus timeouts and
quick MQTT reconnects. Durations the services count in *simulated* seconds (lease, staleness,
the simulated inverter's passive timeout) are set for the simulator speed used here.

What the tests see of the fleet:

* ``Observer``: every payload on ``ongrid/{site}/#`` as raw bytes with its arrival time. It
  subscribes raw (no validation), so it never answers anything itself: it is a passive tap.
* ``SimControl``: the simulator's HTTP side channel (ground truth, fault switches, the inverter's
  received 0x42/0x49 requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from services.devtools.demo import SCENARIO, Fleet, relocate_scenario
from services.devtools.devdb import Server, influxd_available, running_influxd
from services.devtools.endpoints import endpoint_map, read_endpoints
from services.devtools.fleet_start import start_when_online
from services.devtools.localbroker import MOSQUITTO, Broker, running_broker
from shared import topics
from shared.bus import Bus
from shared.config import MqttConfig
from shared.contract import model_for_topic
from shared.messages import Availability, AvailabilityState, DispatcherDecision, Message
from shared.ports import free_port
from shared.topics import Kind

if TYPE_CHECKING:
    from services.recorder.rows import PointKey

SPEED = 20.0
START = datetime(2026, 6, 21, 9, 0, tzinfo=UTC)
SITE = "faults"
# Simulated devices the fleet reads: the inverter over Modbus TCP, the grid meter on an RTU pty,
# the BMS on its own pty. The other endpoints of the seed scenario are not started.
USED_DEVICES = ("inv1", "grid", "bat1")
SERVICES = {
    "inverter-bridge": "services.inverter_bridge",
    "meter-bridge": "services.meter_bridge",
    "bms-bridge": "services.bms_bridge",
    "dispatcher": "services.dispatcher",
    "recorder": "services.recorder",
}
INVERTER_POLL_S = 0.5
METER_POLL_S = 0.5
BMS_POLL_S = 1.0
MODBUS_TIMEOUT_S = 0.5
MODBUS_RETRIES = 1
# In simulated seconds: 120 s is 6 s of wall time at 20x, renewed every 2 s.
LEASE_S = 120.0
PASSIVE_TIMEOUT_S = 120.0
# Limits of the bridge that the fuzzer checks at the simulated inverter: below the device's
# 3000 W rating, so a clamp by the bridge (not the inverter's own refusal) is what keeps them.
MAX_CHARGE_W = 2500.0
MAX_DISCHARGE_W = 2000.0


def scenario(workdir: Path, broker: Broker, influx_url: str | None) -> dict[str, Any]:
    data = relocate_scenario(yaml.safe_load(SCENARIO.read_text()), workdir, free_port, broker.port)
    data["site"] = SITE
    data["log_level"] = "INFO"
    data["log_format"] = "json"  # the tests read the bridge's command log line by line
    # The services keep the default reconnect backoff: "back within 5 s of the broker" is a
    # property of the shipped defaults, not of a test tuning.
    sim = data["simulator"]
    sim["devices"] = [d for d in sim["devices"] if d["id"] in USED_DEVICES]
    sim["inverter"]["passive_timeout_s"] = PASSIVE_TIMEOUT_S
    sim["control"]["truth_interval_s"] = 0.5
    state = str(workdir / "state")
    inverter = data["inverters"][0]
    inverter.update(
        poll_s=INVERTER_POLL_S,
        state_dir=state,
        max_charge_w=MAX_CHARGE_W,
        max_discharge_w=MAX_DISCHARGE_W,
        write_budget_per_day=1_000_000,
    )
    inverter["transport"].update(timeout_s=MODBUS_TIMEOUT_S, retries=MODBUS_RETRIES)
    meter = data["meters"][0]
    meter["poll_s"] = METER_POLL_S
    meter["transport"].update(timeout_s=MODBUS_TIMEOUT_S, retries=MODBUS_RETRIES)
    battery = data["batteries"][0]
    battery["poll_s"] = BMS_POLL_S
    battery["transport"].update(timeout_s=MODBUS_TIMEOUT_S, retries=MODBUS_RETRIES)
    data["dispatcher"].update(
        grid_meter="grid",
        state_dir=state,
        lease_s=LEASE_S,
        stale_after_s=60.0,  # 3 s of wall time: several missed meter polls
        dwell_s=60.0,
        replan_minutes=120,
        # The faults hit a dispatcher that commands (leases, renewals, the watchdog's hand-back):
        # it writes its self-use setpoints itself rather than handing the inverter its own mode.
        inverter_self_use=False,
    )
    data["recorder"].update(
        flush_interval_s=0.2,
        status_interval_s=1.0,
        stats_interval_s=3600,
        retry_max_s=0.5,
        batch_size=200,
    )
    if influx_url is not None:
        data["influxdb"] = {"api": "v1", "url": influx_url, "database": "ongrid", "timeout_s": 2, "retries": 0}
    return data


# -- the simulator's side channel -----------------------------------------------------------------


@dataclass
class SimControl:
    url: str

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def truth(self) -> dict[str, Any]:
        return self._call("GET", "/truth")  # type: ignore[no-any-return]

    def writes(self) -> dict[str, Any]:
        return self._call("GET", "/writes")  # type: ignore[no-any-return]

    def fault(self, device: str, **switches: Any) -> None:
        self._call("POST", f"/faults/{device}", switches)

    def clear(self, device: str) -> None:
        self._call("POST", f"/faults/{device}/clear", {})


# -- a passive tap on the site's topics -----------------------------------------------------------


_UNPARSED: Any = object()


@dataclass(eq=False)
class Seen:
    at: float  # time.monotonic() on arrival
    topic: str
    payload: bytes
    _parsed: Any = field(default=_UNPARSED, repr=False)

    def message(self) -> Message | None:
        """The payload as its topic's model (None when it is not one), parsed once."""
        if self._parsed is _UNPARSED:
            model = model_for_topic(self.topic)
            parsed = None
            if model is not None:
                try:
                    parsed = model.model_validate_json(self.payload)
                except (ValueError, RecursionError):
                    parsed = None
            self._parsed = parsed
        return self._parsed  # type: ignore[no-any-return]


@dataclass
class Observer:
    """Every message of the site as it arrived; ``wait`` polls a predicate over them."""

    mqtt: MqttConfig
    site: str
    seen: list[Seen] = field(default_factory=list)
    by_topic: dict[str, list[Seen]] = field(default_factory=dict)
    bus: Bus | None = None

    async def __aenter__(self) -> Observer:
        self.bus = Bus(self.mqtt, site=self.site, service="observer-" + uuid.uuid4().hex[:6], announce=False)
        await self.bus.__aenter__()

        async def on(topic: str, payload: bytes) -> None:
            item = Seen(time.monotonic(), topic, payload)
            self.seen.append(item)
            self.by_topic.setdefault(topic, []).append(item)

        self.bus.subscribe_raw(topics.everything(self.site), on)
        await self.bus.subscribed(15)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.bus is not None:
            await self.bus.close()

    def on(self, topic: str, since: float = 0.0) -> list[Seen]:
        return [s for s in self.by_topic.get(topic, ()) if s.at >= since]

    def messages(self, topic: str, since: float = 0.0) -> list[Any]:
        return [m for m in (s.message() for s in self.on(topic, since)) if m is not None]

    def latest(self, topic: str) -> Any | None:
        items = self.by_topic.get(topic)
        return items[-1].message() if items else None

    async def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what}: not within {timeout:.0f} s")


# -- the fleet ------------------------------------------------------------------------------------


@dataclass
class FaultFleet:
    workdir: Path
    broker: Broker
    influx: Server | None
    data: dict[str, Any]
    fleet: Fleet
    control: SimControl
    endpoints: dict[str, str]

    @property
    def site(self) -> str:
        return str(self.data["site"])

    @property
    def mqtt(self) -> MqttConfig:
        return MqttConfig(host=self.broker.host, port=self.broker.port, reconnect_min_s=0.2, reconnect_max_s=1.0)

    def observer(self) -> Observer:
        return Observer(self.mqtt, self.site)

    def service_availability(self, service: str) -> str:
        return topics.service_availability(self.site, service)

    def device_availability(self, kind: Kind, device: str) -> str:
        return topics.availability(self.site, kind, device)

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.fleet.log_path(name)
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def logs(self) -> str:
        return "".join(f"\n--- {name} ---\n{self.log(name, 2500)}" for name in self.fleet.processes)

    def dead(self) -> dict[str, int]:
        return self.fleet.dead()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.fleet.kill(name, sig)

    def restart(self, name: str) -> None:
        self.fleet.restart(name)

    def revive(self) -> None:
        """Restart any service that is not running (a previous test may have left one down)."""
        for name in self.dead():
            if name != "simulator":
                self.fleet.restart(name)
        for device in USED_DEVICES:
            with contextlib.suppress(OSError):
                self.control.clear(device)


@contextlib.contextmanager
def running_fleet(workdir: Path) -> Iterator[FaultFleet]:
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(running_broker())
        influx = stack.enter_context(running_influxd()) if influxd_available() else None
        data = scenario(workdir, broker, influx.url if influx else None)
        config = workdir / "ongrid.yaml"
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        fleet = Fleet(workdir, config)
        stack.callback(fleet.stop)
        clock = ("--speed", str(SPEED), "--start", START.isoformat(), "--hold")
        fleet.start("simulator", "services.simulator", *clock, "--mqtt")
        simulator = fleet.processes["simulator"]
        endpoints = endpoint_map(read_endpoints(simulator, timeout=60, log=fleet.log_path("simulator")))
        # Drain the simulator's stdout in the background so it can never block on a full pipe.
        assert simulator.stdout is not None
        os.set_blocking(simulator.stdout.fileno(), False)
        for name, module in SERVICES.items():
            fleet.start(name, module)
        mqtt = MqttConfig(host=broker.host, port=broker.port)
        start_when_online(mqtt, SITE, SERVICES, endpoints["control"], dead=fleet.dead)
        yield FaultFleet(workdir, broker, influx, data, fleet, SimControl(endpoints["control"]), endpoints)


# -- published versus stored ----------------------------------------------------------------------

# Rows not keyed by the message's own time (plan steps, forecast points at their start; statistics
# at their day) or not queued for a recorder that is away (the simulator's truth is QoS 0).
NOT_COUNTED = {
    "sim_truth", "plan", "plan_step", "forecast", "forecast_point", "daily_stats", "monthly_stats", "payback"
}

def expected_rows(seen: list[Seen], t0_ns: int, t1_ns: int) -> set[PointKey]:
    """The rows the recorder must hold for what was published, by the recorder's own layout."""
    from services.recorder.points import to_rows

    keys: set[PointKey] = set()
    for item in seen:
        message = item.message()
        if message is None:
            continue
        for row in to_rows(topics.parse(item.topic), message):
            if row.measurement not in NOT_COUNTED and t0_ns <= row.ts_ns <= t1_ns:
                keys.add(row.key)
    return keys


def stored_rows(influx_url: str, measurements: set[str], t0_ns: int, t1_ns: int) -> list[PointKey]:
    """Every point InfluxDB holds for the site in the window, one entry per (series, time)."""
    import urllib.parse

    keys: list[PointKey] = []
    for measurement in sorted(measurements):
        q = (
            f'SELECT * FROM "{measurement}" WHERE "site" = \'{SITE}\' '
            f"AND time >= {t0_ns} AND time <= {t1_ns} GROUP BY *"
        )
        url = f"{influx_url}/query?" + urllib.parse.urlencode({"db": "ongrid", "q": q, "epoch": "ns"})
        with urllib.request.urlopen(url, timeout=10) as response:
            data = json.loads(response.read())
        for series in data["results"][0].get("series", []):
            tags = tuple(sorted((k, v) for k, v in (series.get("tags") or {}).items() if v != ""))
            keys.extend((measurement, tags, int(value[0])) for value in series["values"])
    return keys


# -- the fixtures of the fault suite and the topic fuzzer (their conftests import them) ------------


@pytest.fixture(scope="session")
def fault_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultFleet]:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with running_fleet(tmp_path_factory.mktemp("fault-fleet")) as fleet:
        yield fleet


def _online(observer: Observer, topic: str) -> bool:
    message = observer.latest(topic)
    return isinstance(message, Availability) and message.state is AvailabilityState.ONLINE


@pytest.fixture
async def fleet(fault_fleet: FaultFleet) -> AsyncIterator[FaultFleet]:
    """The shared fleet, every service and device online and the dispatcher commanding."""
    fault_fleet.revive()
    async with fault_fleet.observer() as observer:
        wanted = [fault_fleet.service_availability(name) for name in SERVICES]
        wanted += [
            fault_fleet.device_availability(Kind.INVERTER, "inv1"),
            fault_fleet.device_availability(Kind.METER, "grid"),
            fault_fleet.device_availability(Kind.BMS, "bat1"),
        ]
        try:
            await observer.wait(lambda: all(_online(observer, t) for t in wanted), 90, "fleet online")
            decision = topics.dispatcher_decision(fault_fleet.site)

            def commanding() -> bool:
                latest = observer.latest(decision)
                return isinstance(latest, DispatcherDecision) and latest.commanding

            await observer.wait(commanding, 60, "dispatcher commanding")
        except AssertionError as exc:
            states = {t: observer.latest(t) for t in wanted}
            detail = f"{exc}; availability {states}; dead {fault_fleet.dead()}"
            raise AssertionError(detail + fault_fleet.logs()) from None
    yield fault_fleet
    assert not {n: c for n, c in fault_fleet.dead().items() if n == "simulator"}, fault_fleet.logs()
