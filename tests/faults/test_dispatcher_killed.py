"""The dispatcher is SIGKILLed: the inverter is back in its own self-use mode within the lease.

The bridge's watchdog sees no renewal, writes 0x0103 = 0 W (self-use behaviour at once) and stops
heartbeats, so the simulated inverter also leaves passive mode on its own timeout. Checked from
three sides: the bridge's ``watchdog_expired`` event and ``InverterState.control``, the write the
simulated inverter received, and its ground-truth ``control``.
"""

from __future__ import annotations

import signal
import time

from shared import topics
from shared.messages import Availability, AvailabilityState, Event, InverterCommand, InverterControl, InverterState
from shared.modbus.sofar_pdu import AUTO_REGISTER, PASSIVE_FUNCTION
from tests.support.fault_fleet import LEASE_S, PASSIVE_TIMEOUT_S, SPEED, FaultFleet

# Simulated seconds of slack on the lease: the bridge's watchdog ticks every 0.2 s wall (4 s
# simulated here) and each process follows the simulator's clock from its published truth.
TICK_SLACK_S = 20.0


async def test_inverter_returns_to_self_use_within_the_lease(fleet: FaultFleet) -> None:
    site = fleet.site
    commands = topics.inverter_command(site, "inv1")
    async with fleet.observer() as observer:
        await observer.wait(lambda: observer.messages(commands), 15, "a command from the dispatcher")
        assert fleet.control.truth()["inverter"]["control"] == "passive"
        writes_before = fleet.control.writes()["total"]
        fleet.kill("dispatcher", signal.SIGKILL)
        killed_at = time.monotonic()
        last = [c for c in observer.messages(commands) if isinstance(c, InverterCommand)][-1]

        # Its last will tells everyone it is gone.
        will = fleet.service_availability("dispatcher")

        def gone() -> bool:
            return any(
                isinstance(m, Availability) and m.state is AvailabilityState.OFFLINE
                for m in observer.messages(will, killed_at)
            )

        await observer.wait(gone, 15, "the dispatcher's last will")

        events = topics.event(site, "inverter", "inv1")

        def expired() -> Event | None:
            found = [e for e in observer.messages(events, killed_at) if isinstance(e, Event)]
            return next((e for e in found if e.code == "watchdog_expired"), None)

        wall_lease = LEASE_S / SPEED
        event = await observer.wait(expired, wall_lease + 10, "watchdog_expired from the inverter bridge")
        assert event.details["wrote"] is True, event
        overdue = (event.ts - last.ts).total_seconds() - last.lease_s
        assert overdue <= TICK_SLACK_S, f"handed back {overdue:.0f} simulated s after the lease ran out"

        def self_use_state() -> bool:
            state = observer.latest(topics.inverter_state(site, "inv1"))
            return isinstance(state, InverterState) and state.control is InverterControl.SELF_USE

        await observer.wait(self_use_state, 5, "InverterState.control self_use")
        # What reached the inverter after the kill: the hand-back, 0x0103 (auto) = 0 W.
        received = [w for w in fleet.control.writes()["writes"] if w["seq"] >= writes_before]
        passive = [w for w in received if w["function"] == PASSIVE_FUNCTION]
        assert passive and passive[-1]["register"] == AUTO_REGISTER and passive[-1]["value"] == 0, passive
        # And without heartbeats the simulated inverter leaves passive mode on its own.
        await observer.wait(
            lambda: fleet.control.truth()["inverter"]["control"] == "self_use",
            PASSIVE_TIMEOUT_S / SPEED + 5,
            "simulated inverter back in self-use",
        )
    fleet.restart("dispatcher")
