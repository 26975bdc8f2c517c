"""One fleet for the whole fault suite, and a check that it is healthy before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.devtools.localbroker import MOSQUITTO
from shared import topics
from shared.messages import Availability, AvailabilityState, DispatcherDecision
from shared.topics import Kind
from tests.faults.harness import SERVICES, FaultFleet, Observer, running_fleet


@pytest.fixture(scope="session")
def fault_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultFleet]:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with running_fleet(tmp_path_factory.mktemp("fault-fleet")) as fleet:
        yield fleet


def _online(observer: Observer, topic: str) -> bool:
    message = observer.latest(topic)
    return isinstance(message, Availability) and message.state is AvailabilityState.ONLINE


@pytest.fixture
async def fleet(fault_fleet: FaultFleet) -> AsyncIterator[FaultFleet]:
    """The shared fleet, every service and device online and the dispatcher commanding."""
    fault_fleet.revive()
    async with fault_fleet.observer() as observer:
        wanted = [fault_fleet.service_availability(name) for name in SERVICES]
        wanted += [
            fault_fleet.device_availability(Kind.INVERTER, "inv1"),
            fault_fleet.device_availability(Kind.METER, "grid"),
            fault_fleet.device_availability(Kind.BMS, "bat1"),
        ]
        try:
            await observer.wait(lambda: all(_online(observer, t) for t in wanted), 90, "fleet online")
            decision = topics.dispatcher_decision(fault_fleet.site)

            def commanding() -> bool:
                latest = observer.latest(decision)
                return isinstance(latest, DispatcherDecision) and latest.commanding

            await observer.wait(commanding, 60, "dispatcher commanding")
        except AssertionError as exc:
            states = {t: observer.latest(t) for t in wanted}
            detail = f"{exc}; availability {states}; dead {fault_fleet.dead()}"
            raise AssertionError(detail + fault_fleet.logs()) from None
    yield fault_fleet
    assert not {n: c for n, c in fault_fleet.dead().items() if n == "simulator"}, fault_fleet.logs()
