"""Do the inverter and the BMS agree on the state of charge?

The seed's owners saw "app says 99 %, inverter says 82 %" for days with nothing saying so: one of
the two is wrong, and a plan, a reserve or a night's forecast built on the wrong one is wrong too.
A difference of a few points is normal (rounding, the two count at different moments); one over
``threshold_pct`` that lasts ``after_s`` is not, and is raised once, then cleared once when the two
agree again. Readings further apart in time than ``max_apart_s`` are not compared: one of them is
stale and says nothing about the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared.messages import Event, EventLevel


@dataclass(frozen=True)
class SocWatch:
    """Memory between readings: when the current disagreement began, and whether it was raised."""

    since: datetime | None = None
    raised: bool = False


@dataclass(frozen=True)
class SocVerdict:
    """A change worth an event: the disagreement ``raised`` (it lasted) or ``cleared``."""

    kind: Literal["raised", "cleared"]
    inverter_pct: float
    bms_pct: float
    lasted_s: float

    @property
    def difference_pct(self) -> float:
        return abs(self.inverter_pct - self.bms_pct)


def watch_soc(
    watch: SocWatch,
    inverter_pct: float,
    inverter_at: datetime,
    bms_pct: float,
    bms_at: datetime,
    *,
    threshold_pct: float,
    after_s: float,
    max_apart_s: float,
) -> tuple[SocWatch, SocVerdict | None]:
    """One comparison of the latest inverter and BMS readings; the new memory and any verdict."""
    if abs((inverter_at - bms_at).total_seconds()) > max_apart_s:
        return watch, None
    now = max(inverter_at, bms_at)
    apart = abs(inverter_pct - bms_pct) > threshold_pct
    if apart:
        since = watch.since or now
        lasted = (now - since).total_seconds()
        if not watch.raised and lasted >= after_s:
            return SocWatch(since, True), SocVerdict("raised", inverter_pct, bms_pct, lasted)
        return SocWatch(since, watch.raised), None
    if watch.raised and watch.since is not None:
        return SocWatch(), SocVerdict("cleared", inverter_pct, bms_pct, (now - watch.since).total_seconds())
    return SocWatch(), None


def soc_event(verdict: SocVerdict, *, inverter: str, bms: str, threshold_pct: float, ts: datetime) -> Event:
    """The event a verdict is published as: both values, both devices, and whose SoC is used."""
    names = f"inverter {inverter} says {verdict.inverter_pct:.0f} %, BMS {bms} says {verdict.bms_pct:.0f} %"
    details = {
        "inverter": inverter,
        "inverter_soc_pct": verdict.inverter_pct,
        "bms": bms,
        "bms_soc_pct": verdict.bms_pct,
        "difference_pct": round(verdict.difference_pct, 2),
        "threshold_pct": threshold_pct,
        "lasted_s": round(verdict.lasted_s, 1),
        "soc_source": "bms",
    }
    if verdict.kind == "raised":
        text = (
            f"SoC disagreement: {names}, {verdict.difference_pct:.0f} points apart for "
            f"{verdict.lasted_s / 60:.0f} min (over {threshold_pct:g}); the dispatcher uses the BMS's"
        )
        return Event(ts=ts, level=EventLevel.WARNING, code="soc_disagreement", message=text, details=details)
    text = f"SoC agreement again: {names} (they disagreed for {verdict.lasted_s / 60:.0f} min)"
    return Event(ts=ts, level=EventLevel.INFO, code="soc_disagreement_cleared", message=text, details=details)
