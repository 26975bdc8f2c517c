"""Plumbing every device bridge shares: availability episodes and map-driven Modbus polling."""

from .availability import DeviceAvailability
from .map_poller import GroupSchedule, MapPoller, PollFailed

__all__ = ["DeviceAvailability", "GroupSchedule", "MapPoller", "PollFailed"]
