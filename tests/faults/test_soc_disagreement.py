"""The seed's "app says 99 %, inverter says 82 %": the simulated inverter's SoC register is switched
17 points under the battery's (the simulator's ``soc_offset_pct`` fault) while the BMS keeps telling
the truth. The real bridges read both, and the real dispatcher raises one ``soc_disagreement`` event
naming both values and both devices after ``dispatcher.soc_disagreement_s`` (300 simulated seconds by
default), says in every decision that it uses the BMS's SoC, and clears the event once the inverter
reads right again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from shared import topics
from shared.messages import DispatcherDecision, Event, EventLevel
from shared.topics import Kind
from tests.support.fault_fleet import FaultFleet

OFFSET_PCT = -17.0


def events(observer: Any, topic: str, code: str, since: float) -> list[Event]:
    return [e for e in observer.messages(topic, since) if isinstance(e, Event) and e.code == code]


async def test_inverter_and_bms_soc_apart_is_raised_once_then_cleared(fleet: FaultFleet) -> None:
    site = fleet.site
    event_topic = topics.event(site, Kind.DISPATCHER, topics.DISPATCHER_DEVICE)
    decision_topic = topics.dispatcher_decision(site)
    async with fleet.observer() as observer:
        t0 = time.monotonic()
        decision = await observer.wait(
            lambda: next((d for d in observer.messages(decision_topic, t0) if isinstance(d, DispatcherDecision)), None),
            60,
            "a decision",
        )
        assert decision.soc_source == "bms" and decision.soc_device == "bat1", decision
        assert abs(decision.numbers["soc_inverter_pct"] - decision.numbers["soc_bms_pct"]) < 3, decision.numbers
        await asyncio.to_thread(fleet.control.fault, "inv1", soc_offset_pct=OFFSET_PCT)
        faulted = time.monotonic()
        try:
            raised = await observer.wait(
                lambda: events(observer, event_topic, "soc_disagreement", faulted), 120, "a soc_disagreement event"
            )
        finally:
            await asyncio.to_thread(fleet.control.clear, "inv1")
        cleared_from = time.monotonic()
        cleared = await observer.wait(
            lambda: events(observer, event_topic, "soc_disagreement_cleared", faulted),
            120,
            "a soc_disagreement_cleared event",
        )
        later = [d for d in observer.messages(decision_topic, faulted) if isinstance(d, DispatcherDecision)]
    assert len(raised) == 1, raised
    event = raised[0]
    details = event.details
    assert event.level is EventLevel.WARNING
    assert (details["inverter"], details["bms"]) == ("inv1", "bat1")
    assert abs(details["difference_pct"] - abs(OFFSET_PCT)) <= 2.0, details
    assert details["inverter_soc_pct"] < details["bms_soc_pct"]
    assert details["lasted_s"] >= 300.0, details  # dispatcher.soc_disagreement_s, simulated seconds
    assert "inverter inv1 says" in event.message and "BMS bat1 says" in event.message
    assert "the dispatcher uses the BMS's" in event.message
    assert cleared[0].level is EventLevel.INFO and cleared[0].details["difference_pct"] <= 10.0
    assert len(events(observer, event_topic, "soc_disagreement", cleared_from)) == 0
    # Throughout, each decision said whose SoC it stood on, with both readings beside it.
    assert later and all(d.soc_source == "bms" and d.soc_device == "bat1" for d in later)
    assert any(d.numbers["soc_bms_pct"] - d.numbers["soc_inverter_pct"] > 10 for d in later)
