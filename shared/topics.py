"""Every MQTT topic name in ongrid is built here, and nowhere else.

Grammar: ``ongrid/{site}/{kind}/{device}/{stream}``. Node-RED flows, Home Assistant and the
recorder depend on these names, so they only ever grow: a new kind or stream may be added, an
existing one is never renamed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ROOT = "ongrid"
HA_DISCOVERY_PREFIX = "homeassistant"
SHARED_PREFIX = "$share"
ANY = "+"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Kind(StrEnum):
    INVERTER = "inverter"
    BMS = "bms"
    METER = "meter"
    DISPATCHER = "dispatcher"
    RECORDER = "recorder"
    STATS = "stats"
    # A service as a process (its last will lives here); devices have their own availability.
    SERVICE = "service"
    # Flexible loads (diverter, heat pump, EV) as the dispatcher sees them.
    LOAD = "load"
    # Ground truth of the simulated house: tests and benchmarks only.
    SIMULATOR = "simulator"
    # External forecasts (PV, load) fed by Node-RED or another tool.
    FORECAST = "forecast"


class Stream(StrEnum):
    STATE = "state"
    COMMAND = "command"
    ACK = "ack"
    AVAILABILITY = "availability"
    PLAN = "plan"
    DECISION = "decision"
    EVENT = "event"
    CONFIG = "config"
    SET = "set"
    COUNTERS = "counters"
    TRUTH = "truth"


def check_name(value: str, what: str) -> str:
    """Reject a site or device id that would break the topic grammar (``/``, ``+``, ``#``)."""
    if not _NAME.match(value):
        raise ValueError(
            f"{what} {value!r} is not a valid topic level: use 1-64 letters, digits, '_' or '-'"
        )
    return value


def topic(site: str, kind: Kind | str, device: str, stream: Stream | str) -> str:
    """The one place a topic string is assembled. ``+`` is allowed for subscriptions."""
    for value, what in ((site, "site"), (device, "device")):
        if value != ANY:
            check_name(value, what)
    return f"{ROOT}/{site}/{Kind(kind).value}/{device}/{Stream(stream).value}"


@dataclass(frozen=True, slots=True)
class TopicParts:
    site: str
    kind: Kind
    device: str
    stream: Stream


def parse(name: str) -> TopicParts:
    """Split an ongrid topic into its parts; ``ValueError`` names what is wrong."""
    levels = name.split("/")
    if len(levels) != 5 or levels[0] != ROOT:
        raise ValueError(f"topic {name!r} is not of the form {ROOT}/site/kind/device/stream")
    _, site, kind, device, stream = levels
    try:
        return TopicParts(site, Kind(kind), device, Stream(stream))
    except ValueError as exc:
        raise ValueError(f"topic {name!r}: {exc}") from None


def shared(group: str, pattern: str) -> str:
    """An MQTT 5 shared subscription, so several instances split one stream."""
    check_name(group, "shared subscription group")
    return f"{SHARED_PREFIX}/{group}/{pattern}"


def all_of(site: str = ANY, kind: Kind | str | None = None, stream: Stream | str | None = None) -> str:
    """A subscription pattern over every device of a kind and/or stream."""
    kind_level = ANY if kind is None else Kind(kind).value
    stream_level = ANY if stream is None else Stream(stream).value
    if site != ANY:
        check_name(site, "site")
    return f"{ROOT}/{site}/{kind_level}/{ANY}/{stream_level}"


def everything(site: str = ANY) -> str:
    """Every ongrid topic of a site (``+`` for all sites)."""
    if site != ANY:
        check_name(site, "site")
    return f"{ROOT}/{site}/#"


# Named helpers for the topics the services talk on. Each is a thin use of ``topic``.


def inverter_state(site: str, device: str) -> str:
    return topic(site, Kind.INVERTER, device, Stream.STATE)


def inverter_command(site: str, device: str) -> str:
    return topic(site, Kind.INVERTER, device, Stream.COMMAND)


def inverter_ack(site: str, device: str) -> str:
    return topic(site, Kind.INVERTER, device, Stream.ACK)


def inverter_counters(site: str, device: str) -> str:
    return topic(site, Kind.INVERTER, device, Stream.COUNTERS)


def battery_state(site: str, device: str) -> str:
    return topic(site, Kind.BMS, device, Stream.STATE)


def meter_state(site: str, device: str) -> str:
    return topic(site, Kind.METER, device, Stream.STATE)


def availability(site: str, kind: Kind | str, device: str) -> str:
    return topic(site, kind, device, Stream.AVAILABILITY)


def service_availability(site: str, service: str) -> str:
    return topic(site, Kind.SERVICE, service, Stream.AVAILABILITY)


def event(site: str, kind: Kind | str, device: str) -> str:
    return topic(site, kind, device, Stream.EVENT)


DISPATCHER_DEVICE = "main"
MODE_DEVICE = "mode"


def dispatcher_decision(site: str) -> str:
    return topic(site, Kind.DISPATCHER, DISPATCHER_DEVICE, Stream.DECISION)


def dispatcher_plan(site: str) -> str:
    return topic(site, Kind.DISPATCHER, DISPATCHER_DEVICE, Stream.PLAN)


def mode_set(site: str) -> str:
    """``ongrid/{site}/dispatcher/mode/set``: where a person or Node-RED asks for a mode."""
    return topic(site, Kind.DISPATCHER, MODE_DEVICE, Stream.SET)


def mode_state(site: str) -> str:
    """``ongrid/{site}/dispatcher/mode/state``: the mode in force, retained."""
    return topic(site, Kind.DISPATCHER, MODE_DEVICE, Stream.STATE)


def load_state(site: str, load: str) -> str:
    return topic(site, Kind.LOAD, load, Stream.STATE)


def forecast(site: str, name: str) -> str:
    """External forecasts: ``name`` is ``pv`` or ``load``."""
    return topic(site, Kind.FORECAST, name, Stream.STATE)


def daily_stats(site: str) -> str:
    return topic(site, Kind.STATS, "daily", Stream.STATE)


def recorder_state(site: str, recorder: str) -> str:
    return topic(site, Kind.RECORDER, recorder, Stream.STATE)


def simulator_truth(site: str) -> str:
    return topic(site, Kind.SIMULATOR, "house", Stream.TRUTH)


def ha_discovery(component: str, node_id: str, object_id: str) -> str:
    """Home Assistant MQTT discovery config topic."""
    for value, what in ((component, "component"), (node_id, "node_id"), (object_id, "object_id")):
        check_name(value, what)
    return f"{HA_DISCOVERY_PREFIX}/{component}/{node_id}/{object_id}/config"


def ha_discovery_pattern(node_id: str, component: str = ANY) -> str:
    """Every discovery config under ``node_id``, of one component or (``+``) of all."""
    if component != ANY:
        check_name(component, "component")
    return f"{HA_DISCOVERY_PREFIX}/{component}/{check_name(node_id, 'node_id')}/+/config"
