"""SoC disagreement between the inverter and the BMS, step by step (services/dispatcher/core/soc_check)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.dispatcher.core.soc_check import SocWatch, watch_soc

T0 = datetime(2026, 6, 21, 18, 0, tzinfo=UTC)
LIMITS = {"threshold_pct": 10.0, "after_s": 300.0, "max_apart_s": 60.0}

# (seconds since T0, inverter SoC, BMS SoC, verdict after this reading)
# The seed's story: the app (BMS) says 99 %, the inverter 82 %, for longer than five minutes.
STEPS: list[tuple[int, float, float, str | None]] = [
    (0, 95.0, 96.0, None),  # a point apart: normal
    (60, 92.0, 99.0, None),  # 7 apart: within the threshold
    (120, 88.0, 99.0, None),  # 11 apart: the disagreement begins here
    (300, 84.0, 99.0, None),  # 3 minutes of it: not yet
    (419, 82.0, 99.0, None),  # 4 min 59 s
    (420, 82.0, 99.0, "raised"),  # 5 minutes: raised, once
    (480, 82.0, 99.0, None),  # still apart: not raised again
    (900, 95.0, 99.0, "cleared"),  # 4 apart: agreed again, cleared once
    (960, 95.0, 99.0, None),
    (1020, 85.0, 99.0, None),  # apart again: a new disagreement starts its own five minutes
    (1080, 96.0, 99.0, None),  # agreed before five minutes: nothing was raised, nothing to clear
    (1140, 85.0, 99.0, None),
    (1440, 85.0, 99.0, "raised"),
]


def test_step_table() -> None:
    watch = SocWatch()
    for seconds, inverter, bms, expected in STEPS:
        at = T0 + timedelta(seconds=seconds)
        watch, verdict = watch_soc(watch, inverter, at, bms, at, **LIMITS)
        got = verdict.kind if verdict is not None else None
        assert got == expected, f"at {seconds} s ({inverter} vs {bms}): {got}, expected {expected}"
        if verdict is not None:
            assert (verdict.inverter_pct, verdict.bms_pct) == (inverter, bms)


def test_raised_verdict_names_both_values_and_how_long() -> None:
    watch = SocWatch()
    watch, _ = watch_soc(watch, 82.0, T0, 99.0, T0, **LIMITS)
    later = T0 + timedelta(minutes=6)
    watch, verdict = watch_soc(watch, 82.0, later, 99.0, later, **LIMITS)
    assert verdict is not None and verdict.kind == "raised"
    assert verdict.difference_pct == pytest.approx(17.0)
    assert verdict.lasted_s == 360.0
    assert watch == SocWatch(T0, True)


def test_readings_too_far_apart_in_time_are_not_compared() -> None:
    watch = SocWatch(T0, False)
    stale_bms = T0 + timedelta(minutes=10)
    inverter_at = stale_bms + timedelta(seconds=61)
    same, verdict = watch_soc(watch, 82.0, inverter_at, 99.0, stale_bms, **LIMITS)
    assert (same, verdict) == (watch, None)
    # Nor does a stale pair clear a raised disagreement.
    raised = SocWatch(T0, True)
    assert watch_soc(raised, 99.0, inverter_at, 99.0, stale_bms, **LIMITS) == (raised, None)


def test_the_threshold_itself_is_agreement() -> None:
    watch, verdict = watch_soc(SocWatch(), 89.0, T0, 99.0, T0, **LIMITS)
    assert (watch, verdict) == (SocWatch(), None)


def test_event_names_both_values_both_devices_and_the_soc_used() -> None:
    from services.dispatcher.core.soc_check import SocVerdict, soc_event
    from shared.messages import EventLevel

    raised = soc_event(SocVerdict("raised", 82.0, 99.0, 360.0), inverter="inv1", bms="bat1", threshold_pct=10, ts=T0)
    assert raised.code == "soc_disagreement" and raised.level is EventLevel.WARNING
    assert raised.message == (
        "SoC disagreement: inverter inv1 says 82 %, BMS bat1 says 99 %, 17 points apart for 6 min (over 10); "
        "the dispatcher uses the BMS's"
    )
    assert raised.details == {
        "inverter": "inv1", "inverter_soc_pct": 82.0, "bms": "bat1", "bms_soc_pct": 99.0,
        "difference_pct": 17.0, "threshold_pct": 10, "lasted_s": 360.0, "soc_source": "bms",
    }
    cleared = soc_event(SocVerdict("cleared", 96.0, 99.0, 780.0), inverter="inv1", bms="bat1", threshold_pct=10, ts=T0)
    assert cleared.code == "soc_disagreement_cleared" and cleared.level is EventLevel.INFO
    assert "they disagreed for 13 min" in cleared.message
