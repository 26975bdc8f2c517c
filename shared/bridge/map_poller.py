"""Poll a device described by a register map: per poll group, coalesced reads, one error type.

The schedule is pure (``GroupSchedule``); ``MapPoller`` does the reads through a shared ``Link``.
A poll reads every group that is due, planned together so adjacent groups share transactions; if
any read or decode fails the whole poll fails and nothing from it is used (a value that could not
be read is never published). Values of a slower group are carried between its reads; the bridges
poll every group their published state needs at ``poll_s``, so a state never carries a value older
than its timestamp, and keep slower schedules for what is not published every poll (identity).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from shared.modbus import Link, LinkError
from shared.registers import RegisterError, RegisterMap, Value, decode, plan_reads
from shared.registers.read_planner import ReadBlock


class PollFailed(Exception):
    """A poll that did not complete. The message names the device, the read and the cause."""

    def __init__(self, device: str, cause: Exception) -> None:
        super().__init__(f"{device}: {cause}")
        self.cause = cause


def group_intervals(regmap: RegisterMap, groups: Iterable[str], poll_s: float) -> dict[str, float]:
    """The configured ``poll_s`` for the map's fastest group(s); slower groups keep their own
    interval but never poll faster than ``poll_s``."""
    chosen = list(groups)
    if not chosen:
        raise ValueError(f"map {regmap.name}: no poll groups chosen")
    fastest = min(regmap.groups[g].interval_s for g in chosen)
    return {
        g: poll_s if regmap.groups[g].interval_s == fastest else max(poll_s, regmap.groups[g].interval_s)
        for g in chosen
    }


class GroupSchedule:
    """Which poll groups are due at a (monotonic) time. A group never read is always due."""

    def __init__(self, intervals: Mapping[str, float]) -> None:
        for group, interval in intervals.items():
            if not (interval > 0 and math.isfinite(interval)):
                raise ValueError(f"poll group {group!r}: interval {interval!r} must be a positive number")
        self.intervals = dict(intervals)
        self._last: dict[str, float] = {}

    def due(self, now: float) -> list[str]:
        """Due groups, fastest first. A small slack keeps a 60 s group from slipping a whole
        5 s poll because the 12th poll ran a millisecond early."""
        out = []
        for group, interval in sorted(self.intervals.items(), key=lambda item: item[1]):
            last = self._last.get(group)
            if last is None or now - last >= interval - min(0.25, interval / 10):
                out.append(group)
        return out

    def done(self, groups: Iterable[str], now: float) -> None:
        for group in groups:
            self._last[group] = now

    def forget(self) -> None:
        """Make every group due again (after the device was offline)."""
        self._last.clear()


class MapPoller:
    """Reads the points of ``groups`` from one device (``unit``) on a shared ``link``."""

    def __init__(
        self,
        device: str,
        regmap: RegisterMap,
        link: Link,
        unit: int,
        intervals: Mapping[str, float],
    ) -> None:
        self.device = device
        self.regmap = regmap
        self.link = link
        self.unit = unit
        self.schedule = GroupSchedule(intervals)
        # Planned once per set of due groups: the plan depends only on the map and the groups.
        self._plans: dict[frozenset[str], list[ReadBlock]] = {}
        self._cache: dict[str, Value] = {}
        self.polls = 0

    def plan(self, groups: Iterable[str]) -> list[ReadBlock]:
        """The fewest reads covering ``groups`` together (adjacent groups share transactions)."""
        key = frozenset(groups)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = plan_reads(self.regmap, self.regmap.readable_points(set(key)))
        return plan

    async def read_groups(self, groups: Iterable[str]) -> dict[str, Value]:
        """Read and decode every point of ``groups``; ``PollFailed`` on the first failure."""
        values: dict[str, Value] = {}
        for block in self.plan(groups):
            try:
                registers = await self.link.read(block.function, block.address, block.count, self.unit)
                values.update(decode(self.regmap, block, registers))
            except (LinkError, RegisterError) as exc:
                raise PollFailed(self.device, exc) from exc
        return values

    async def poll(self, now: float) -> dict[str, Value]:
        """One scheduled poll: the due groups read now, merged with the latest values of the rest."""
        due = self.schedule.due(now)
        if not due:
            return dict(self._cache)
        try:
            fresh = await self.read_groups(due)
        except PollFailed:
            # After a failure nothing carried over is trusted: the next good poll reads every group.
            self.forget()
            raise
        self.schedule.done(due, now)
        self._cache.update(fresh)
        self.polls += 1
        return dict(self._cache)

    def forget(self) -> None:
        """Drop carried values: after a failure episode every group is read afresh."""
        self._cache.clear()
        self.schedule.forget()
