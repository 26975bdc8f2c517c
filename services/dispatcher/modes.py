"""Pure: the dispatcher's mode in force, from requests, the retained state, expiry and defaults."""

from __future__ import annotations

from datetime import datetime

from shared.messages import DispatcherMode, DispatcherModeName, ModeRequest

__all__ = ["check_request", "default_mode", "expired", "from_request", "restored"]

FORCED = (DispatcherModeName.FORCE_CHARGE, DispatcherModeName.FORCE_DISCHARGE)


def default_mode(name: str, now: datetime, set_by: str = "default") -> DispatcherMode:
    return DispatcherMode(ts=now, mode=DispatcherModeName(name), set_by=set_by)


def check_request(request: ModeRequest, now: datetime) -> str | None:
    """Why a well-formed request still cannot be honoured, or None."""
    if request.until is not None and request.until <= now:
        return f"until {request.until.isoformat()} is not in the future (now {now.isoformat()})"
    if request.target_soc_pct is not None and request.mode not in FORCED:
        return f"target_soc_pct applies to force_charge/force_discharge, not {request.mode.value}"
    if request.power_w is not None and request.mode not in FORCED:
        return f"power_w applies to force_charge/force_discharge, not {request.mode.value}"
    return None


def from_request(request: ModeRequest, now: datetime, set_by: str = "mqtt") -> DispatcherMode:
    return DispatcherMode(
        ts=now,
        mode=request.mode,
        until=request.until,
        target_soc_pct=request.target_soc_pct,
        power_w=request.power_w,
        set_by=set_by,
    )


def expired(mode: DispatcherMode, now: datetime) -> bool:
    return mode.until is not None and now >= mode.until


def restored(retained: DispatcherMode | None, default: str, now: datetime) -> DispatcherMode:
    """The mode to start in: the retained one unless it is missing or ran out while we were down."""
    if retained is None:
        return default_mode(default, now)
    if expired(retained, now):
        return default_mode(default, now, set_by="expired")
    return retained
