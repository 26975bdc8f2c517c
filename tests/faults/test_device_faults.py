"""A device stops answering or answers garbage (the simulator's fault switches).

Its bridge publishes ``offline`` within two polls, publishes no reading while the device is bad,
does not crash, and is ``online`` again once the device recovers. While the inverter is offline
(or the dispatcher's grid meter is silent) the dispatcher stops commanding: at most the one
hand-back command, then silence, then commanding again when the device is back.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from shared import topics
from shared.messages import Availability, AvailabilityState, CommandMode, DispatcherDecision, InverterCommand
from shared.topics import Kind
from tests.support.fault_fleet import (
    BMS_POLL_S,
    INVERTER_POLL_S,
    METER_POLL_S,
    MODBUS_RETRIES,
    MODBUS_TIMEOUT_S,
    SPEED,
    FaultFleet,
    Observer,
)

STALE_AFTER_WALL_S = 60.0 / SPEED


def two_polls_s(poll_s: float) -> float:
    """The longest two failing polls can take: each waits out every attempt's timeout (the Link
    bounds an attempt at 2 x timeout + 1 s), plus one second for a loaded machine."""
    attempt = 2 * MODBUS_TIMEOUT_S + 1
    return 2 * (poll_s + (MODBUS_RETRIES + 1) * attempt) + 1.0


CASES = [
    pytest.param("inv1", Kind.INVERTER, {"silent": True}, INVERTER_POLL_S, id="inverter-silent"),
    pytest.param("inv1", Kind.INVERTER, {"out_of_range": True}, INVERTER_POLL_S, id="inverter-garbage-values"),
    pytest.param("grid", Kind.METER, {"crc": True}, METER_POLL_S, id="meter-bad-crc"),
    pytest.param("grid", Kind.METER, {"exception": 4}, METER_POLL_S, id="meter-exception"),
    pytest.param("bat1", Kind.BMS, {"garbage": True}, BMS_POLL_S, id="bms-garbage"),
]


def state_topic(site: str, kind: Kind, device: str) -> str:
    return topics.topic(site, kind, device, "state")


async def wait_state(observer: Observer, topic: str, state: AvailabilityState, since: float, timeout: float) -> float:
    def seen() -> float | None:
        for item in observer.on(topic, since):
            message = item.message()
            if isinstance(message, Availability) and message.state is state:
                return item.at
        return None

    return float(await observer.wait(seen, timeout, f"{topic} {state.value}"))


@pytest.mark.parametrize(("device", "kind", "switches", "poll_s"), CASES)
async def test_bad_device_goes_offline_and_comes_back(
    fleet: FaultFleet, device: str, kind: Kind, switches: dict[str, Any], poll_s: float
) -> None:
    site = fleet.site
    availability = fleet.device_availability(kind, device)
    readings = state_topic(site, kind, device)
    commands = topics.inverter_command(site, "inv1")
    decisions = topics.dispatcher_decision(site)
    async with fleet.observer() as observer:
        await observer.wait(lambda: observer.on(readings), 10, "a reading before the fault")
        fleet.control.fault(device, **switches)
        faulted_at = time.monotonic()
        bound = two_polls_s(poll_s)
        offline_at = await wait_state(observer, availability, AvailabilityState.OFFLINE, faulted_at, bound)

        # A poll already on the wire when the fault was switched on may still succeed; after it,
        # nothing read from the bad device is published as a reading.
        in_flight = poll_s + (MODBUS_RETRIES + 1) * (2 * MODBUS_TIMEOUT_S + 1)
        await asyncio.sleep(STALE_AFTER_WALL_S + 1.5 if device == "grid" else 1.5)
        bad_window = observer.on(readings, faulted_at + in_flight)
        assert bad_window == [], f"{len(bad_window)} readings published from a bad {device}"

        if device in ("inv1", "grid"):
            # The dispatcher stops: the inverter offline, or its grid meter's readings stale.
            settle = offline_at + (0.5 if device == "inv1" else STALE_AFTER_WALL_S + 1.0)
            sent = [m for m in observer.messages(commands, settle) if isinstance(m, InverterCommand)]
            assert len(sent) <= 1 and all(c.mode is CommandMode.SELF_USE for c in sent), (
                f"commands while {device} is bad: {[(c.mode.value, c.power_w) for c in sent]}"
            )
            # Decisions may stop altogether (no fresh input, no lease to renew); any there is, and
            # the latest, says the dispatcher is not commanding, and why.
            late = [m for m in observer.messages(decisions, settle + 0.5) if isinstance(m, DispatcherDecision)]
            latest = observer.latest(decisions)
            assert isinstance(latest, DispatcherDecision)
            assert all(not d.commanding for d in [*late, latest]), [(d.reason, d.commanding) for d in late]
            assert {d.reason for d in [*late, latest]} <= {"inverter_offline", "stale_inputs"}

        assert not fleet.dead(), fleet.logs()
        fleet.control.clear(device)
        cleared_at = time.monotonic()
        await wait_state(observer, availability, AvailabilityState.ONLINE, cleared_at, two_polls_s(poll_s) + 3)
        await observer.wait(lambda: observer.on(readings, cleared_at), 10, f"{device} readings again")
        if device in ("inv1", "grid"):

            def commanding() -> bool:
                return any(
                    isinstance(d, DispatcherDecision) and d.commanding
                    for d in observer.messages(decisions, cleared_at)
                )

            await observer.wait(commanding, 15, "the dispatcher commanding again")
    assert not fleet.dead(), fleet.logs()
