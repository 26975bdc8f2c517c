"""Home Assistant MQTT discovery: the retained ``homeassistant/.../config`` payloads for ongrid.

Two halves, as everywhere in ongrid:

* pure builders (``discovery_configs(cfg, kinds)``) that turn the fleet config into
  ``{topic: payload}``, one sensor per reading a person puts on a dashboard (SoC, battery/grid/PV/load
  power, the energy counters the HA energy dashboard needs, each battery module's SoC, voltage and
  cell spread) and a ``select`` for the dispatcher mode;
* ``publish_discovery(bus, cfg, kinds)``, which publishes them retained and clears (empty retained
  payload, HA's documented way to delete an entity) every config of those kinds under this site's
  node id that the current config no longer produces, so a removed meter disappears from HA instead
  of going stale forever.

Each service announces what it publishes (``announce``): the inverter, meter and BMS bridges their
devices, the dispatcher its mode and decision, the recorder the daily statistics. A home running
only the bridges (monitoring, no control) still gets its device entities, and a service only ever
clears configs of its own kind (every object id starts with the kind).

Energy sensors use ``device_class: energy``, ``state_class: total_increasing`` and ``kWh``: the
combination HA's energy dashboard accepts. The inverter's *today* counters reset at its midnight,
which ``total_increasing`` treats as a new cycle, as HA documents for daily meters.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from shared import topics
from shared.bus import Bus
from shared.config import BatteryConfig, InverterConfig, MeterConfig, OngridConfig
from shared.logs import get_logger
from shared.messages import DispatcherModeName, Event, EventLevel, utc_now
from shared.topics import Kind

log = get_logger("homeassistant")

ORIGIN = {"name": "ongrid", "support_url": "https://github.com/ongrid/ongrid"}
MANUFACTURER_BY_MODEL = {
    "sofar_me3000sp": "Sofar Solar",
    "pylontech_rs485": "Pylontech",
    "eastron_sdm120": "Eastron",
    "eastron_sdm630": "Eastron",
}
# The service that publishes each kind's state: its last will makes the entities unavailable
# when the process dies, even if the device's own availability was last seen online.
PUBLISHER = {
    Kind.INVERTER: "inverter-bridge",
    Kind.BMS: "bms-bridge",
    Kind.METER: "meter-bridge",
    Kind.DISPATCHER: "dispatcher",
    Kind.STATS: "recorder",
}

DeviceClass = Literal["battery", "power", "energy", "voltage", "current", "temperature"]
StateClass = Literal["measurement", "total_increasing"]


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """One HA sensor read from one JSON field of a state payload."""

    key: str
    name: str
    field: str
    device_class: DeviceClass | None
    state_class: StateClass | None
    unit: str | None
    # Multiplies the field (Wh -> kWh is 0.001); rounding keeps float noise out of HA's history.
    scale: float = 1.0
    digits: int | None = None
    icon: str | None = None
    # Read from the battery module with this ``index`` in ``modules`` (None: a top-level field).
    module: int | None = None

    def value_template(self) -> str:
        if self.module is not None:
            # A module the stack does not report (yet) renders None too, not a template error.
            pick = f'value_json.modules | selectattr("index", "eq", {self.module}) | map(attribute="{self.field}")'
            value = "v" if self.digits is None else f"(v | round({self.digits}))"
            return "{% set v = " + pick + " | first | default(none) %}{{ " + f"{value} if v is number else none" + " }}"
        field = f"value_json.{self.field}"
        value = field
        if self.scale != 1.0:
            value = f"({value} * {self.scale!r})"
        if self.digits is not None:
            value = f"{value} | round({self.digits})"
        # A field published as null (a BMS value dropped as implausible) renders None: HA's "unknown".
        return "{{ " + f"{value} if {field} is number else none" + " }}"


def _power(key: str, name: str, field: str) -> SensorSpec:
    return SensorSpec(key, name, field, "power", "measurement", "W", digits=0)


def _energy(key: str, name: str, field: str) -> SensorSpec:
    return SensorSpec(key, name, field, "energy", "total_increasing", "kWh", scale=0.001, digits=3)


INVERTER_SENSORS: tuple[SensorSpec, ...] = (
    SensorSpec("soc", "Battery SoC", "battery_soc_pct", "battery", "measurement", "%", digits=1),
    _power("battery_power", "Battery power", "battery_power_w"),
    _power("grid_power", "Grid power", "grid_power_w"),
    _power("pv_power", "PV power", "pv_power_w"),
    _power("load_power", "Load power", "load_power_w"),
    SensorSpec("battery_temp", "Battery temperature", "battery_temp_c", "temperature", "measurement", "°C"),
    _energy("pv_energy_today", "PV energy today", "pv_energy_today_wh"),
    _energy("import_energy_today", "Grid import today", "import_energy_today_wh"),
    _energy("export_energy_today", "Grid export today", "export_energy_today_wh"),
    _energy("load_energy_today", "Load energy today", "load_energy_today_wh"),
    _energy("pv_energy_total", "PV energy", "pv_energy_total_wh"),
    _energy("import_energy_total", "Grid import", "import_energy_total_wh"),
    _energy("export_energy_total", "Grid export", "export_energy_total_wh"),
    _energy("load_energy_total", "Load energy", "load_energy_total_wh"),
)

BATTERY_SENSORS: tuple[SensorSpec, ...] = (
    SensorSpec("soc", "SoC", "soc_pct", "battery", "measurement", "%", digits=1),
    _power("power", "Power", "power_w"),
    SensorSpec("voltage", "Voltage", "voltage_v", "voltage", "measurement", "V", digits=2),
    SensorSpec("current", "Current", "current_a", "current", "measurement", "A", digits=2),
    SensorSpec("cell_spread", "Cell spread", "cell_spread_mv", "voltage", "measurement", "mV", digits=0),
    SensorSpec("cell_min", "Lowest cell", "cell_min_v", "voltage", "measurement", "V", digits=3),
    SensorSpec("cell_max", "Highest cell", "cell_max_v", "voltage", "measurement", "V", digits=3),
    SensorSpec("temp_max", "Warmest temperature", "temp_max_c", "temperature", "measurement", "°C", digits=1),
)

# Per module of the stack, read from ``BatteryState.modules`` by the module's ``index``.
MODULE_SENSORS: tuple[SensorSpec, ...] = (
    SensorSpec("soc", "SoC", "soc_pct", "battery", "measurement", "%", digits=1),
    SensorSpec("voltage", "Voltage", "voltage_v", "voltage", "measurement", "V", digits=2),
    SensorSpec("cell_spread", "Cell spread", "cell_spread_mv", "voltage", "measurement", "mV", digits=0),
)

METER_SENSORS: tuple[SensorSpec, ...] = (
    _power("power", "Power", "power_w"),
    SensorSpec("voltage", "Voltage", "voltage_v", "voltage", "measurement", "V", digits=1),
    _energy("import_energy", "Import energy", "import_energy_wh"),
    _energy("export_energy", "Export energy", "export_energy_wh"),
)

DAILY_SENSORS: tuple[SensorSpec, ...] = (
    _energy("pv_today", "PV today", "pv_wh"),
    _energy("load_today", "Load today", "load_wh"),
    _energy("import_today", "Import today", "import_wh"),
    _energy("export_today", "Export today", "export_wh"),
    _energy("battery_charge_today", "Battery charge today", "battery_charge_wh"),
    _energy("battery_discharge_today", "Battery discharge today", "battery_discharge_wh"),
)

MODE_OPTIONS: tuple[str, ...] = tuple(mode.value for mode in DispatcherModeName)
# HA renders this with the chosen option as ``value``; the dispatcher reads it as a ModeRequest.
MODE_COMMAND_TEMPLATE = '{"mode": "{{ value }}"}'


def node_id(site: str) -> str:
    """Every ongrid config of a site lives under this node id, which is what removal scans."""
    return topics.check_name(f"ongrid_{site}", "node_id")


def object_id(*parts: str) -> str:
    """Join parts into a topic-safe id; long ids keep a hash so two never collide when cut."""
    joined = "_".join(parts)
    if len(joined) <= 64:
        return joined
    digest = hashlib.sha1(joined.encode()).hexdigest()[:8]
    return f"{joined[:55]}_{digest}"


def _availability(site: str, kind: Kind, device: str | None) -> list[dict[str, str]]:
    entries = [{"topic": topics.service_availability(site, PUBLISHER[kind])}]
    if device is not None:
        entries.append({"topic": topics.availability(site, kind, device)})
    # ongrid availability is JSON ({"v":1,"ts":...,"state":"online"}), not a bare word.
    return [
        {
            **entry,
            "value_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }
        for entry in entries
    ]


def _device(site: str, kind: Kind, device: str, name: str, model: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "identifiers": [object_id("ongrid", site, kind.value, device)],
        "name": name,
        "manufacturer": MANUFACTURER_BY_MODEL.get(model or "", "ongrid"),
    }
    if model:
        info["model"] = model
    return info


def _sensor(
    site: str, kind: Kind, device: str | None, spec: SensorSpec, state_topic: str, device_info: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    oid = object_id(kind.value, device or "site", spec.key)
    payload: dict[str, Any] = {
        "name": spec.name,
        "unique_id": object_id("ongrid", site, oid),
        "state_topic": state_topic,
        "value_template": spec.value_template(),
        "availability": _availability(site, kind, device),
        "availability_mode": "all",
        "device": device_info,
        "origin": ORIGIN,
        "qos": 1,
    }
    if spec.device_class:
        payload["device_class"] = spec.device_class
    if spec.state_class:
        payload["state_class"] = spec.state_class
    if spec.unit:
        payload["unit_of_measurement"] = spec.unit
    if spec.icon:
        payload["icon"] = spec.icon
    return topics.ha_discovery("sensor", node_id(site), oid), payload


def _sensors(
    site: str, kind: Kind, device: str | None, specs: Iterable[SensorSpec], state_topic: str, info: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    return dict(_sensor(site, kind, device, spec, state_topic, info) for spec in specs)


def module_sensors(modules: int) -> tuple[SensorSpec, ...]:
    """``MODULE_SENSORS`` for each module of a stack (index 0 first, named from 1 as on the rack)."""
    return tuple(
        replace(spec, key=f"module{i + 1}_{spec.key}", name=f"Module {i + 1} {spec.name.lower()}", module=i)
        for i in range(modules)
        for spec in MODULE_SENSORS
    )


def inverter_configs(site: str, inverter: InverterConfig) -> dict[str, dict[str, Any]]:
    info = _device(site, Kind.INVERTER, inverter.id, f"Inverter {inverter.id}", inverter.model)
    return _sensors(site, Kind.INVERTER, inverter.id, INVERTER_SENSORS, topics.inverter_state(site, inverter.id), info)


def battery_configs(site: str, battery: BatteryConfig) -> dict[str, dict[str, Any]]:
    """The stack (with its cell spread) and each module; none without a BMS link (no BMS state)."""
    if not battery.has_bms_link:
        return {}
    info = _device(site, Kind.BMS, battery.id, f"Battery {battery.id}", battery.model)
    specs = BATTERY_SENSORS + module_sensors(battery.modules)
    return _sensors(site, Kind.BMS, battery.id, specs, topics.battery_state(site, battery.id), info)


def meter_configs(site: str, meter: MeterConfig) -> dict[str, dict[str, Any]]:
    info = _device(site, Kind.METER, meter.id, f"Meter {meter.id} ({meter.role.value})", meter.model)
    return _sensors(site, Kind.METER, meter.id, METER_SENSORS, topics.meter_state(site, meter.id), info)


def stats_configs(site: str) -> dict[str, dict[str, Any]]:
    info = _device(site, Kind.STATS, "daily", f"ongrid statistics ({site})", None)
    return _sensors(site, Kind.STATS, None, DAILY_SENSORS, topics.daily_stats(site), info)


# The plan's summary as the Plan sensor's attributes: its steps (96 or more) would be too big for
# HA's state attributes, so the planned SoC at the horizon's end stands for them.
PLAN_ATTRIBUTES_TEMPLATE = (
    '{{ {"id": value_json.id, "reason": value_json.reason, "solver": value_json.solver, '
    '"solve_ms": value_json.solve_ms, "step_s": value_json.step_s, "steps": value_json.steps | length, '
    '"soc_pct_start": value_json.soc_pct_start, '
    '"soc_pct_end": (value_json.steps | last).soc_pct_end if value_json.steps else none} | tojson }}'
)


def dispatcher_configs(site: str, currency: str) -> dict[str, dict[str, Any]]:
    info = _device(site, Kind.DISPATCHER, "main", f"ongrid dispatcher ({site})", None)
    availability = _availability(site, Kind.DISPATCHER, None)
    mode_oid = object_id("dispatcher", "mode")
    reason_oid = object_id("dispatcher", "reason")
    plan_oid = object_id("dispatcher", "plan")
    return {
        topics.ha_discovery("select", node_id(site), mode_oid): {
            "name": "Mode",
            "unique_id": object_id("ongrid", site, mode_oid),
            "command_topic": topics.mode_set(site),
            "command_template": MODE_COMMAND_TEMPLATE,
            "state_topic": topics.mode_state(site),
            "value_template": "{{ value_json.mode }}",
            "options": list(MODE_OPTIONS),
            "availability": availability,
            "availability_mode": "all",
            "device": info,
            "origin": ORIGIN,
            "qos": 1,
            "retain": False,
            "icon": "mdi:battery-sync",
        },
        topics.ha_discovery("sensor", node_id(site), reason_oid): {
            "name": "Decision",
            "unique_id": object_id("ongrid", site, reason_oid),
            "state_topic": topics.dispatcher_decision(site),
            "value_template": "{{ value_json.reason }}",
            "json_attributes_topic": topics.dispatcher_decision(site),
            "json_attributes_template": "{{ value_json.numbers | tojson }}",
            "availability": availability,
            "availability_mode": "all",
            "device": info,
            "origin": ORIGIN,
            "qos": 1,
            "icon": "mdi:head-cog",
        },
        # No device_class / state_class: a forecast over the horizon is neither HA's monetary total
        # nor a measurement to keep long-term statistics of.
        topics.ha_discovery("sensor", node_id(site), plan_oid): {
            "name": "Plan expected cost",
            "unique_id": object_id("ongrid", site, plan_oid),
            "state_topic": topics.dispatcher_plan(site),
            "value_template": "{{ value_json.expected_cost | round(2) }}",
            "unit_of_measurement": currency,
            "json_attributes_topic": topics.dispatcher_plan(site),
            "json_attributes_template": PLAN_ATTRIBUTES_TEMPLATE,
            "availability": availability,
            "availability_mode": "all",
            "device": info,
            "origin": ORIGIN,
            "qos": 1,
            "icon": "mdi:chart-timeline-variant",
        },
    }


# What each kind's publisher announces (``Kind`` -> configs from the fleet config).
KINDS: tuple[Kind, ...] = (Kind.INVERTER, Kind.BMS, Kind.METER, Kind.STATS, Kind.DISPATCHER)
# The HA components each kind's configs use. A service scans (and its broker user may read and
# write, deploy/mosquitto/acl) only these: the bridges and the recorder sensors, nothing else.
COMPONENTS: dict[Kind, tuple[str, ...]] = {
    Kind.INVERTER: ("sensor",),
    Kind.BMS: ("sensor",),
    Kind.METER: ("sensor",),
    Kind.STATS: ("sensor",),
    Kind.DISPATCHER: ("select", "sensor"),
}


def discovery_configs(cfg: OngridConfig, kinds: Iterable[Kind] = KINDS) -> dict[str, dict[str, Any]]:
    """Every discovery config of ``kinds`` this fleet config implies, by topic. Pure: no I/O."""
    site, wanted = cfg.site, set(kinds)
    configs: dict[str, dict[str, Any]] = {}
    if Kind.INVERTER in wanted:
        for inverter in cfg.inverters:
            configs |= inverter_configs(site, inverter)
    if Kind.BMS in wanted:
        for battery in cfg.batteries:
            configs |= battery_configs(site, battery)
    if Kind.METER in wanted:
        for meter in cfg.meters:
            configs |= meter_configs(site, meter)
    if Kind.STATS in wanted:
        configs |= stats_configs(site)
    if Kind.DISPATCHER in wanted:
        configs |= dispatcher_configs(site, cfg.tariff.currency)
    return configs


def owned(topic: str, kinds: Iterable[Kind]) -> bool:
    """Whether a discovery topic belongs to one of ``kinds``: every object id starts with its kind."""
    object_id_ = topic.split("/")[-2]
    return any(object_id_.startswith(f"{kind.value}_") for kind in kinds)


def stale_topics(existing: Iterable[str], wanted: Iterable[str]) -> list[str]:
    """Configs on the broker that the current config no longer produces."""
    keep = set(wanted)
    return sorted(topic for topic in set(existing) if topic not in keep)


def encode(payload: dict[str, Any]) -> bytes:
    # Sorted keys: an unchanged config is byte-identical, so a restart is not a change in HA.
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class DiscoveryResult:
    published: tuple[str, ...]
    removed: tuple[str, ...]
    # False when the retained configs could not all be read back: then nothing was removed.
    scanned: bool = True


async def publish_discovery(
    bus: Bus, cfg: OngridConfig, kinds: Iterable[Kind] = KINDS, *, timeout_s: float = 10.0
) -> DiscoveryResult:
    """Publish the configs of ``kinds`` retained and clear the ones of those kinds left from devices
    no longer configured (other kinds are other services' to keep or clear).

    The retained configs already on the broker are read by subscribing to this site's node id, in
    the components these kinds use only (all a bridge's broker user may read); a message the bus
    sends to itself afterwards marks the end of them, because the broker delivers one client's
    retained messages and its later publications in order.
    """
    kinds = tuple(kinds)
    wanted = discovery_configs(cfg, kinds)
    existing: set[str] = set()
    scanning = scanned = True
    barrier = asyncio.Event()
    barrier_topic = bus.event_topic
    marker = f"ha-discovery-scan-{uuid.uuid4().hex}"

    async def on_config(topic: str, payload: bytes) -> None:
        if scanning and payload and owned(topic, kinds):
            existing.add(topic)

    async def on_event(topic: str, payload: bytes) -> None:
        if marker.encode() in payload:
            barrier.set()

    for component in sorted({c for kind in kinds for c in COMPONENTS[kind]}):
        bus.subscribe_raw(topics.ha_discovery_pattern(node_id(cfg.site), component), on_config)
    bus.subscribe_raw(barrier_topic, on_event)
    await bus.subscribed(timeout_s)
    scan_event = Event(
        ts=utc_now(), level=EventLevel.INFO, code="ha_discovery_scan", message=marker, topic=barrier_topic
    )
    await bus.publish(barrier_topic, scan_event)
    try:
        await asyncio.wait_for(barrier.wait(), timeout_s)
    except TimeoutError:
        # Without the end marker the scan may be incomplete: publishing is still right, removing is not.
        log.warning("no end of the retained discovery scan after %.0f s; stale configs kept", timeout_s)
        existing.clear()
        scanned = False
    scanning = False

    removed = stale_topics(existing, wanted)
    for topic in removed:
        await bus.publish_raw(topic, b"", qos=1, retain=True)
    for topic, payload in wanted.items():
        await bus.publish_raw(topic, encode(payload), qos=1, retain=True)
    log.info("home assistant discovery: %d configs published, %d removed", len(wanted), len(removed))
    return DiscoveryResult(published=tuple(wanted), removed=tuple(removed), scanned=scanned)


async def announce(bus: Bus, cfg: OngridConfig, *kinds: Kind) -> None:
    """A service's discovery at start: a convenience, so a failure is logged and never stops it."""
    try:
        # Once connected, however long that takes: a bridge that starts before the broker (or while
        # it restarts) still announces its devices, instead of giving up after the scan's timeout.
        await bus.wait_connected()
        await publish_discovery(bus, cfg, kinds)
    except Exception as exc:
        log.warning("Home Assistant discovery not published: %s", exc)
