"""``ongrid status`` ages readings in the clock they were stamped with: against the demo (``clock:
simulator``) that is the simulator's clock, not the wall clock months away from it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from rich.console import Console

from services.status import FleetView, fleet_clock, render
from shared import topics
from shared.examples import EXAMPLES
from shared.messages import (
    Availability,
    AvailabilityState,
    DispatcherDecision,
    InverterState,
    Setpoints,
    SimTruth,
)

SITE = "seed"
WALL = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
SIM = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)


def _view(truth_sent: datetime) -> FleetView:
    view = FleetView(SITE)
    truth = SimTruth(ts=SIM, sim_time=SIM, wall_time=truth_sent, pv_w=0, load_w=0, grid_w=0, battery_w=0,
                     soc_pct=50, speed=60.0)  # fmt: skip
    reading = EXAMPLES[InverterState].model_copy(update={"ts": SIM - timedelta(seconds=10)})
    asyncio.run(view.take(topics.simulator_truth(SITE), truth))
    asyncio.run(view.take(topics.inverter_state(SITE, "inv1"), reading))
    return view


def _text(view: FleetView, now: datetime, name: str) -> str:
    console = Console(width=200, record=True)
    console.print(render(view, now, name))
    return console.export_text()


def test_ages_follow_the_simulators_clock() -> None:
    # The simulator published 12:00:00 two wall seconds ago at 60x: it is 12:02:00 simulated.
    view = _view(WALL - timedelta(seconds=2))
    now, name = fleet_clock(view, "simulator", WALL)
    assert now == SIM + timedelta(minutes=2) and name == "simulated clock"
    # A service announced itself (wall clock) 90 s ago, before it followed the simulator.
    announced = Availability(ts=WALL - timedelta(seconds=90), state=AvailabilityState.ONLINE)
    asyncio.run(view.take(topics.availability(SITE, topics.Kind.SERVICE, "recorder"), announced))
    console = Console(width=200, record=True)
    console.print(render(view, now, name, WALL))
    text = console.export_text()
    assert "2 min" in text and "simulated clock" in text and "90 s (wall clock)" in text
    assert " h " not in text and "3889" not in text
    # A simulator silent for minutes has stopped: its clock stands where it was last heard.
    assert fleet_clock(_view(WALL - timedelta(minutes=5)), "simulator", WALL) == (SIM, "simulated clock, stopped")


def test_wall_clock_fleet_ages_by_wall_time() -> None:
    view = _view(WALL)
    assert fleet_clock(view, "wall", WALL) == (WALL, "wall clock")
    assert fleet_clock(FleetView(SITE), "simulator", WALL) == (WALL, "wall clock")  # no simulator heard


def test_a_handed_back_decision_shows_no_command() -> None:
    """The demo at 60x: handed back, the decision's +102 W is the inverter's expected power from a
    reading minutes old while its own self-use charges; status must not show it as a setpoint."""
    view = _view(WALL - timedelta(seconds=2))
    decision = EXAMPLES[DispatcherDecision].model_copy(
        update={"ts": SIM, "setpoints": Setpoints(battery_power_w=102.0), "commanding": False}
    )
    asyncio.run(view.take(topics.dispatcher_decision(SITE), decision))
    assert "102 expected" in _text(view, SIM, "simulated clock")
    commanded = decision.model_copy(update={"setpoints": Setpoints(battery_power_w=-2000.0), "commanding": True})
    asyncio.run(view.take(topics.dispatcher_decision(SITE), commanded))
    text = _text(view, SIM, "simulated clock")
    assert "-2,000" in text and "expected" not in text
