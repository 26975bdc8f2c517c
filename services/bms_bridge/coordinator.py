"""Per battery: one poll's outcome -> what to publish. No I/O here, so every rule is testable.

Rules (DESIGN.md "Safety and failure", issue 4 item 6): a state is published only from a
complete poll; the device goes offline after ``offline_after`` consecutive failed polls and online
again on the first good one; a failure is logged once per episode, not per poll. A value no
battery can have drops that field only (issue 15 item 2): the state says so in ``quality_flags``
and an ``implausible_value`` event names field and value when it first appears, and again
(``implausible_value_cleared``) when the BMS is back to sense.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shared import topics
from shared.bridge import DeviceAvailability
from shared.messages import AvailabilityState, BatteryState, Event, EventLevel, Message
from shared.topics import Kind

from .health import Finding, HealthMonitor
from .state import Dropped, ImplausibleReading, ModuleReading, screen, state_of


@dataclass
class Outcome:
    publish: list[tuple[str, Message]] = field(default_factory=list)
    state: BatteryState | None = None


class BatteryCoordinator:
    def __init__(
        self,
        site: str,
        device: str,
        log: logging.Logger,
        *,
        model: str = "pylontech_rs485",
        offline_after: int = 2,
        health: HealthMonitor | None = None,
    ) -> None:
        self.site = site
        self.device = device
        self.model = model
        self.health = health or HealthMonitor()
        self.log = log
        self._availability = DeviceAvailability(log, f"BMS {device}", device, offline_after=offline_after)
        self._dropped: dict[str, Dropped] = {}

    @property
    def availability(self) -> AvailabilityState | None:
        return self._availability.state

    @property
    def consecutive_failures(self) -> int:
        return self._availability.consecutive_failures

    @property
    def state_topic(self) -> str:
        return topics.battery_state(self.site, self.device)

    @property
    def availability_topic(self) -> str:
        return topics.availability(self.site, Kind.BMS, self.device)

    @property
    def event_topic(self) -> str:
        return topics.event(self.site, Kind.BMS, self.device)

    def polled(self, readings: Sequence[ModuleReading], ts: datetime) -> Outcome:
        """A poll that read every module. Implausible values are dropped field by field; the poll
        fails only when no module's voltage or state of charge is left."""
        if not readings:
            return self.failed(ImplausibleReading("no module was read"), ts)
        screened = screen(readings)
        events = self._implausible_events({d.flag: d for s in screened for d in s.dropped}, ts)
        try:
            state = state_of(self.device, screened, ts, model=self.model)
        except ImplausibleReading as exc:
            out = self.failed(exc, ts)
            out.publish.extend((self.event_topic, e) for e in events)
            return out
        out = Outcome(state=state)
        out.publish.append((self.state_topic, state))
        online = self._availability.succeeded(ts)
        if online is not None:
            out.publish.append((self.availability_topic, online))
        out.publish.extend((self.event_topic, e) for e in events)
        raised, cleared = self.health.observe(ts, state.modules)
        out.publish.extend((self.event_topic, self._event(f, ts, raised=True)) for f in raised)
        out.publish.extend((self.event_topic, self._event(f, ts, raised=False)) for f in cleared)
        return out

    def failed(self, error: Exception, ts: datetime) -> Outcome:
        out = Outcome()
        offline = self._availability.failed(error, ts)
        if offline is not None:
            out.publish.append((self.availability_topic, offline))
        return out

    def _implausible_events(self, now: dict[str, Dropped], ts: datetime) -> list[Event]:
        """An event when a field first reads implausible and when it reads sense again, not per poll."""
        events = []
        for flag, d in now.items():
            if flag not in self._dropped:
                self.log.warning("BMS %s: %s", self.device, d.message, extra={"device": self.device})
                events.append(
                    Event(
                        ts=ts,
                        level=EventLevel.WARNING,
                        code="implausible_value",
                        message=d.message,
                        device=self.device,
                        details={
                            "module": d.module,
                            "address": d.address,
                            "field": d.field,
                            "value": d.value,
                            "low": d.low,
                            "high": d.high,
                        },
                    )
                )
        for flag, d in self._dropped.items():
            if flag not in now:
                events.append(
                    Event(
                        ts=ts,
                        level=EventLevel.INFO,
                        code="implausible_value_cleared",
                        message=f"module {d.module} (address {d.address}): {d.field} plausible again",
                        device=self.device,
                        details={"module": d.module, "address": d.address, "field": d.field},
                    )
                )
        self._dropped = now
        return events

    def _event(self, finding: Finding, ts: datetime, *, raised: bool) -> Event:
        return Event(
            ts=ts,
            level=EventLevel.WARNING if raised else EventLevel.INFO,
            code=finding.code if raised else f"{finding.code}_cleared",
            message=finding.message if raised else f"cleared: {finding.message}",
            device=self.device,
            details={"module": finding.module, **finding.details},
        )
