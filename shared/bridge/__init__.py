"""Plumbing every device bridge shares: availability episodes, map-driven Modbus polling, the poll
rhythm (``schedule``) and how the devices' loops run (``launcher``)."""

from .availability import DeviceAvailability
from .map_poller import GroupSchedule, MapPoller, PollFailed

__all__ = ["DeviceAvailability", "GroupSchedule", "MapPoller", "PollFailed"]
