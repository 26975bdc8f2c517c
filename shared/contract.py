"""Which payload model travels on which topic: the table the bus, the recorder and the AsyncAPI
document all read, so the three can never disagree."""

from __future__ import annotations

from shared import messages as m
from shared.topics import Kind, Stream, TopicParts, parse

# (kind, stream) -> model. ``None`` for the device means any device of that kind.
_BY_KIND_STREAM: dict[tuple[Kind, Stream], type[m.Message]] = {
    (Kind.INVERTER, Stream.STATE): m.InverterState,
    (Kind.INVERTER, Stream.COMMAND): m.InverterCommand,
    (Kind.INVERTER, Stream.ACK): m.CommandAck,
    (Kind.INVERTER, Stream.COUNTERS): m.WriteCounters,
    (Kind.BMS, Stream.STATE): m.BatteryState,
    (Kind.METER, Stream.STATE): m.MeterState,
    (Kind.DISPATCHER, Stream.DECISION): m.DispatcherDecision,
    (Kind.DISPATCHER, Stream.PLAN): m.Plan,
    (Kind.DISPATCHER, Stream.SET): m.ModeRequest,
    (Kind.DISPATCHER, Stream.STATE): m.DispatcherMode,
    (Kind.STATS, Stream.STATE): m.DailyStats,
    (Kind.LOAD, Stream.STATE): m.LoadState,
    (Kind.FORECAST, Stream.STATE): m.Forecast,
    (Kind.RECORDER, Stream.STATE): m.RecorderStatus,
    (Kind.SIMULATOR, Stream.TRUTH): m.SimTruth,
}


def model_for(parts: TopicParts) -> type[m.Message] | None:
    """The model for a topic; availability and event are the same model on every kind."""
    if parts.stream is Stream.AVAILABILITY:
        return m.Availability
    if parts.stream is Stream.EVENT:
        return m.Event
    return _BY_KIND_STREAM.get((parts.kind, parts.stream))


def model_for_topic(name: str) -> type[m.Message] | None:
    try:
        return model_for(parse(name))
    except ValueError:
        return None


def channels() -> list[tuple[Kind, Stream, type[m.Message]]]:
    """Every (kind, stream, model) the contract defines, for documentation."""
    rows = [(kind, stream, model) for (kind, stream), model in _BY_KIND_STREAM.items()]
    for kind in Kind:
        rows.append((kind, Stream.AVAILABILITY, m.Availability))
        rows.append((kind, Stream.EVENT, m.Event))
    return rows
