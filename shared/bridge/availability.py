"""Pure: a device's availability from its polls, and failure logging once per episode.

Rules (DESIGN.md "Safety and failure", issue 4 item 6): a device goes offline after
``offline_after`` consecutive failed polls and online again on the first good one; a failure is
logged when an episode starts and when it ends, not on every poll in between. Every bridge uses
this one implementation so the rule cannot drift between them.
"""

from __future__ import annotations

import logging
from datetime import datetime

from shared.logs import EpisodeLog
from shared.messages import Availability, AvailabilityState


class DeviceAvailability:
    def __init__(self, log: logging.Logger, what: str, device: str, *, offline_after: int = 2) -> None:
        if offline_after < 1:
            raise ValueError(f"offline_after must be >= 1, got {offline_after}")
        self.device = device
        self.offline_after = offline_after
        self.state: AvailabilityState | None = None
        self.consecutive_failures = 0
        self.episode = EpisodeLog(log, what, device=device)

    @property
    def online(self) -> bool:
        return self.state is AvailabilityState.ONLINE

    def succeeded(self, ts: datetime) -> Availability | None:
        """A complete, valid poll. Returns the message to publish when availability changes."""
        self.consecutive_failures = 0
        self.episode.success()
        if self.state is AvailabilityState.ONLINE:
            return None
        self.state = AvailabilityState.ONLINE
        return Availability(ts=ts, state=AvailabilityState.ONLINE)

    def failed(self, error: object, ts: datetime) -> Availability | None:
        """A poll that could not be completed (or decoded). Returns ``offline`` once, on the Nth."""
        self.consecutive_failures += 1
        self.episode.failure(error)
        if self.consecutive_failures < self.offline_after or self.state is AvailabilityState.OFFLINE:
            return None
        self.state = AvailabilityState.OFFLINE
        reason = f"{self.consecutive_failures} polls failed: {error}"[:200]
        return Availability(ts=ts, state=AvailabilityState.OFFLINE, reason=reason)
