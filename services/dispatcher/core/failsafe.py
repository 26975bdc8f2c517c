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
    (its limits clamp the setpoint). A read time in the future is tolerated up to the same limit
    (small clock skew between hosts); beyond it the reading is as untrustworthy as an old one, or a
    bridge with a fast clock could keep the dispatcher commanding long after it went silent.
    """
    for name, at in (("inverter", snap.inverter_at), ("grid meter", snap.meter_at)):
        age = _age(snap.now, at)
        if age is None:
            return f"no {name} state received yet"
        if abs(age) > stale_after_s:
            return _why(name, age, stale_after_s)
    age = _age(snap.now, snap.bms_at)
    if age is not None and abs(age) > stale_after_s:
        return _why("BMS", age, stale_after_s)
    return None


def _why(name: str, age: float, limit: float) -> str:
    if age < 0:
        return f"{name} state is stamped {-age:.0f} s in the future (clock skew beyond {limit:.0f} s)"
    return f"{name} state is {age:.0f} s old (limit {limit:.0f} s)"
