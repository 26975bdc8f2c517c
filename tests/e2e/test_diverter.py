"""End to end: the seed's diverter (issue 13 item 2) on the real fleet, with and without its CT.

Simulator (Modbus TCP inverter, RTU grid meter on a pty, Pylontech BMS on a pty, and in the CT run a
TCP CT on the diverter's circuit; its Solic 200-like diverter follows its own clamp on the grid
tails) + inverter-bridge + meter-bridge + bms-bridge + dispatcher, each its own process, through a
private Mosquitto, at 20x over 40 minutes of the seed's 21 April evening (the same house and day as
tests/integration/test_diverter_day.py, where a cooker cycles and the diverter pounces whenever it
goes off). The dispatcher has the diverter in ``loads[]``: once with ``meter: null`` and the guard
on (the default), once with the diverter's CT. The figure is the simulator's own
``battery_to_diverter_wh`` over the run. The naive
controller's figure (``meter: null``, guard off), the baseline both are held against, comes from
the same scenario and cadence in one process (``services.devtools.sim_day``: the simulator's physics
under the dispatcher's own planner and controller); a third fleet run gave the same 479 Wh and cost
two minutes of the suite.

At 20x the bridges poll every wall second, so the dispatcher sees the grid every 20 simulated
seconds: a reading never catches the export before the diverter takes it, and the guard works by
its probes alone (handed back, a load going off still shows as a drop of the load seen with the
grid pinned, which a house known to have the diverter probes at once). Targets: the naive run
feeds the tank at least 50 Wh; the guard at most 85 % of what the naive run fed (load-dependent,
see the test); the CT run at most 40 %. Measured on 2026-11-30 (2 cores shared with other
engineers' runs, load 4-5): naive 479 Wh (in process), guard 189, 195, 207 and 326 Wh in four
runs (with five, five, three and one ``diverter_suspected`` events), CT 39-82 Wh, 4 min 30 s; the
same 40 minutes of the guard in one process (``sim_day``, grid and inverter read every 20 s) gave
142 Wh, 112-247 Wh over the meter's ten phases within its 20 s. Before the drop's probe: guard
238-336 Wh, 183 Wh in one process. Those fleet runs' observer subscribed after the clock started
and missed the first truths; with the observer from the held clock's truth at START (the same 40
minutes as the naive figure), one run at load 0.3-1.8: guard 287 Wh (60 % of naive), CT 73 Wh,
4 min 15 s.
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.devtools.demo import SCENARIO, relocate_scenario
from services.devtools.sim_day import simulate_day
from shared import topics
from shared.config import load_config
from shared.messages import DispatcherDecision, Event
from tests.support import MOSQUITTO, Broker, free_port, running_broker
from tests.support.sim_fleet import add_tcp_ct, fleet_polls, run_fleet

SPEED = 20.0
START = datetime(2026, 4, 21, 17, 40, tzinfo=UTC)  # 18:40 London (BST)
END = datetime(2026, 4, 21, 18, 20, tzinfo=UTC)
USED = ("inv1", "grid", "bat1", "imm-meter")

pytestmark = [
    pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed"),
    pytest.mark.timeout(900),  # two runs of the fleet
]


def scenario(workdir: Path, broker: Broker, *, ct: bool, guard: bool) -> dict[str, Any]:
    data = yaml.safe_load(SCENARIO.read_text())
    sim = data["simulator"]
    sim["diverter"] = {"margin_w": 20, "start_w": 100, "reaction_s": 1}
    sim["inverter"].update(self_use_band_w=50, ramp_w_per_s=300)
    load: dict[str, Any] = {"id": "immersion", "kind": "diverter", "meter": None, "detect_without_ct": guard}
    if ct:
        add_tcp_ct(data, meter="imm", position="diverter", role="immersion", port=15023)
        load["meter"] = "imm"
    data["loads"] = [load]
    data = relocate_scenario(data, workdir, free_port, broker.port)
    sim = data["simulator"]
    sim["devices"] = [d for d in sim["devices"] if d["id"] in USED]
    sim["battery"]["initial_soc_pct"] = 80
    sim["control"]["truth_interval_s"] = 0.25
    fleet_polls(data, workdir)
    data["dispatcher"].update(stale_after_s=600, replan_minutes=60)
    return data


def evening(workdir: Path, broker: Broker, *, ct: bool, guard: bool) -> tuple[float, list[Event], list[str]]:
    """Battery energy into the tank over the run (Wh), the dispatcher's events, its decisions' reasons."""
    data = scenario(workdir, broker, ct=ct, guard=guard)
    site = data["site"]
    event_topic = topics.event(site, topics.Kind.DISPATCHER, topics.DISPATCHER_DEVICE)
    decision_topic = topics.dispatcher_decision(site)
    watch = {event_topic: Event, decision_topic: DispatcherDecision}
    run = run_fleet(workdir, broker, data, speed=SPEED, start=START, end=END, watch=watch, slack_s=180)
    # The observer saw the held clock's truth at START (run_fleet asserts it), so the counter's rise
    # covers the same simulated window as the naive run's totals, not a window missing its start.
    ran = [t for t in run.truths if START <= t.sim_time <= END]
    assert ran[0].sim_time == START and (END - ran[-1].sim_time).total_seconds() <= 10, (ran[0], ran[-1])
    fed = ran[-1].battery_to_diverter_wh - ran[0].battery_to_diverter_wh
    return fed, run.messages[event_topic], [d.reason for d in run.messages[decision_topic]]


def naive_in_process(workdir: Path) -> float:
    """The naive controller on the same scenario, read every 20 simulated seconds as the fleet is."""
    with running_broker() as broker:  # only for the scenario's relocated ports; nothing connects
        data = scenario(workdir, broker, ct=False, guard=False)
    config = workdir / "ongrid.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    hours = (END - START).total_seconds() / 3600
    trace = simulate_day(load_config(config), START, hours=hours, meter_s=int(SPEED), inverter_s=int(SPEED))
    assert trace.totals is not None
    return trace.totals.battery_to_diverter_wh


def test_the_battery_stays_out_of_the_tank_with_and_without_a_ct(tmp_path: Path) -> None:
    figures: dict[str, float] = {}
    reasons: dict[str, list[str]] = {}
    events: dict[str, list[Event]] = {}

    def run(name: str, ct: bool) -> None:
        with running_broker() as broker:
            workdir = tmp_path / name
            workdir.mkdir()
            figures[name], events[name], reasons[name] = evening(workdir, broker, ct=ct, guard=True)

    (tmp_path / "naive").mkdir()
    figures["naive (in process)"] = naive = naive_in_process(tmp_path / "naive")
    # One fleet at a time: side by side on two cores the guard's probes, paced by wall-clock polls,
    # lagged enough to feed the tank 312 Wh where alone it fed 238.
    run("guard", False)
    run("ct", True)
    summary = ", ".join(f"{name} {wh:.0f} Wh" for name, wh in figures.items())
    codes = {name: [e.code for e in found if e.code.startswith("diverter")] for name, found in events.items()}
    print(f"\nbattery into the tank, 40 min at {SPEED:.0f}x: {summary}; events {codes}")
    assert naive >= 50.0, summary
    # The guard's probes are paced by wall-clock polls, so its figure rises with the machine's load
    # (with the drop's probe: 189, 195 and 207 Wh at load 4-5, 326 at load 5 beside two in-process
    # days; before it 238-267 Wh alone, 307-312 beside another fleet, over 70 % of naive beside an
    # image build): the bound here is that it clearly acts, with room for a loaded machine; how
    # much it saves is held exactly in test_diverter_day, in process.
    assert figures["guard"] <= 0.85 * naive, summary
    assert figures["ct"] <= 0.4 * naive, summary
    # The guard says what it does: the decisions' reason and an Event a person can read.
    assert "diverter_cap" in reasons["guard"], summary
    assert "diverter_suspected" in codes["guard"], codes
    assert "diverter_cap" not in reasons["ct"] and not codes["ct"], codes


if __name__ == "__main__":  # pragma: no cover - run by hand for a look at the fleet's logs
    raise SystemExit(subprocess.call(["pytest", "-s", __file__], env={**os.environ}))
