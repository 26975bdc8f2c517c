"""Per battery: one poll's outcome -> what to publish. No I/O here, so every rule is testable.

Rules (DESIGN.md "Safety and failure", issue 4 item 6): a state is published only from a
complete, plausible poll; the device goes offline after ``offline_after`` consecutive failed polls
and online again on the first good one; a failure is logged once per episode, not per poll.
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
from .state import ImplausibleReading, ModuleReading, build_state


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
        self._availability = DeviceAvailability(log, f"BMS {device}", device, offline_after=offline_after)

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
        """A poll that read every module. Implausible values count as a failed poll."""
        try:
            state = build_state(self.device, readings, ts, model=self.model)
        except ImplausibleReading as exc:
            return self.failed(exc, ts)
        out = Outcome(state=state)
        out.publish.append((self.state_topic, state))
        online = self._availability.succeeded(ts)
        if online is not None:
            out.publish.append((self.availability_topic, online))
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

    def _event(self, finding: Finding, ts: datetime, *, raised: bool) -> Event:
        return Event(
            ts=ts,
            level=EventLevel.WARNING if raised else EventLevel.INFO,
            code=finding.code if raised else f"{finding.code}_cleared",
            message=finding.message if raised else f"cleared: {finding.message}",
            device=self.device,
            details={"module": finding.module, **finding.details},
        )
