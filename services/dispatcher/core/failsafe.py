"""Failsafe: decide from input ages alone whether the dispatcher may keep commanding."""

from __future__ import annotations

from datetime import datetime

from .snapshot import Snapshot

__all__ = ["stale_inputs"]


def _age(now: datetime, at: datetime | None) -> float | None:
    return None if at is None else (now - at).total_seconds()


def stale_inputs(snap: Snapshot, stale_after_s: float) -> str | None:
    """None when every input is fresh, else why not (the decision's detail).

    The inverter and the grid meter must both be fresh: commanding on an old grid reading is how a
    battery ends up exporting into a dead CT. The BMS must be fresh when it is part of the snapshot
    (its limits clamp the setpoint); a read time in the future counts as fresh (clock skew).
    """
    for name, at in (("inverter", snap.inverter_at), ("grid meter", snap.meter_at)):
        age = _age(snap.now, at)
        if age is None:
            return f"no {name} state received yet"
        if age > stale_after_s:
            return f"{name} state is {age:.0f} s old (limit {stale_after_s:.0f} s)"
    age = _age(snap.now, snap.bms_at)
    if age is not None and age > stale_after_s:
        return f"BMS state is {age:.0f} s old (limit {stale_after_s:.0f} s)"
    return None
