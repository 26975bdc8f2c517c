"""End to end: the seed's heat pump on spare battery (issue 13 item 3), on the real fleet.

Simulator (Modbus TCP inverter, RTU grid meter on a pty, a TCP CT on the heat pump, Pylontech BMS
on a pty; its heat pump follows the weather and obeys its relay's MQTT topic) + inverter-bridge +
meter-bridge + bms-bridge + dispatcher, each its own process, through a private Mosquitto, at 300x
from 17:30 to 22:00 on a January evening. The dispatcher has the heat pump with a run window from
18:00, a 1.8 kWh battery budget, a 25 % floor and ``after_budget: off``. From the simulator's
ground truth: the heat pump is off before 18:00, runs from 18:00 with the battery covering it, and
is switched off once it has taken about 1.8 kWh, the battery still carrying the house after.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.devtools.demo import SCENARIO, relocate_scenario
from shared import topics
from shared.messages import LoadState, SimTruth
from tests.support import MOSQUITTO, Broker, free_port
from tests.support.sim_fleet import add_tcp_ct, fleet_polls, run_fleet

SPEED = 300.0
START = datetime(2026, 1, 14, 17, 30, tzinfo=UTC)  # January: London time is UTC
WINDOW = datetime(2026, 1, 14, 18, 0, tzinfo=UTC)
END = datetime(2026, 1, 14, 22, 0, tzinfo=UTC)
USED = ("inv1", "grid", "bat1", "hp-meter")  # simulated endpoints the fleet reads
BUDGET_KWH = 1.8
SWITCH = "cmnd/heatpump/POWER"  # a Tasmota relay's topic

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed")


def scenario(workdir: Path, broker: Broker) -> dict[str, Any]:
    data = yaml.safe_load(SCENARIO.read_text())
    sim = data["simulator"]
    # The heat pump's own CT, served on TCP, and the meter the fleet reads it with (the same port:
    # relocate_scenario remaps both to one free port).
    add_tcp_ct(data, meter="hp", position="heat_pump", role="heat_pump", port=15022)
    sim["heat_pump"] = {"switch_topic": SWITCH}
    data["loads"] = [
        {
            "id": "heatpump",
            "kind": "heat_pump",
            "meter": "hp",
            "switch_topic": SWITCH,
            "rated_power_w": 1500,
            "run_window": {"start": "18:00", "end": "07:00"},
            "battery_budget_kwh": BUDGET_KWH,
            "min_soc_pct": 25,
            "after_budget": "off",
        }
    ]
    data = relocate_scenario(data, workdir, free_port, broker.port)
    sim = data["simulator"]
    sim["devices"] = [d for d in sim["devices"] if d["id"] in USED]
    sim["step_s"] = 5
    sim["battery"]["initial_soc_pct"] = 70  # a sunny day's spare at teatime
    sim["inverter"]["passive_timeout_s"] = 3600
    sim["control"]["truth_interval_s"] = 0.25
    fleet_polls(data, workdir)
    data["dispatcher"].update(lease_s=3600, stale_after_s=3600, replan_minutes=60, default_daily_load_kwh=11.0)
    return data


def test_heat_pump_runs_from_the_battery_until_its_budget(tmp_path: Path, own_broker: Broker) -> None:
    data = scenario(tmp_path, own_broker)
    state_topic = topics.load_state(data["site"], "heatpump")
    run = run_fleet(
        tmp_path, own_broker, data, speed=SPEED, start=START, end=END, watch={state_topic: LoadState}, slack_s=120
    )
    truths: list[SimTruth] = run.truths
    states: list[LoadState] = run.messages[state_topic]
    fleet = run.fleet
    log = fleet.log_path("dispatcher").read_text(errors="replace")
    context = f"\n--- dispatcher log tail ---\n{log[-4000:]}"

    # The switch: off outside the window, on at the window's start, off when the budget is spent.
    changes = [(s.ts, s.on, s.reason) for s in states]
    context = f"\nload states: {changes}" + context
    on = [s for s in states if s.on]
    off_after = [s for s in states if not s.on and on and s.ts > on[0].ts]
    assert on and on[0].reason == "heat_pump_window", "never switched on in the window" + context
    assert WINDOW <= on[0].ts < WINDOW + timedelta(minutes=20), context
    assert off_after and off_after[0].reason == "heat_pump_budget_spent", "not switched off by the budget" + context
    stop = off_after[0].ts

    def between(a: datetime, b: datetime) -> list[SimTruth]:
        return [t for t in truths if a <= t.sim_time < b]

    # Before the window (once the first cycle switched it off): the heat pump is off.
    before = between(START + timedelta(minutes=15), WINDOW)
    assert before and all(t.heat_pump_w == 0 for t in before), "ran before the window" + context
    # While on: it draws (a January evening), and the battery covers it: little import.
    running = between(on[0].ts + timedelta(minutes=5), stop)
    assert len(running) > 10
    assert min(t.heat_pump_w for t in running) > 300, "switched on but not drawing" + context
    imported = sum(max(t.grid_w, 0.0) for t in running)
    drawn = sum(t.heat_pump_w for t in running)
    assert imported < 0.3 * drawn, f"the grid gave {imported / drawn:.0%} of its draw" + context
    # The energy it took from switch-on to switch-off, from the simulator's own truth: the budget,
    # within a control cycle or two (a cycle is ~5 simulated minutes at this speed, ~0.1 kWh).
    energy_kwh = 0.0
    window = between(on[0].ts, stop + timedelta(minutes=5))
    for a, b in itertools.pairwise(window):
        energy_kwh += a.heat_pump_w * (b.sim_time - a.sim_time).total_seconds() / 3.6e6
    summary = f"\nheat pump on {on[0].ts:%H:%M}, off {stop:%H:%M}, took {energy_kwh:.2f} kWh"
    print(summary)
    assert BUDGET_KWH - 0.25 <= energy_kwh <= BUDGET_KWH + 0.4, summary + context
    # After: off for good (one budget per night), and the battery still carries the house.
    after = between(stop + timedelta(minutes=10), END)
    assert after and all(t.heat_pump_w == 0 for t in after), "ran again after its budget" + context
    assert sum(t.battery_w for t in after) / len(after) > 100, "the battery stopped carrying the house" + context


if __name__ == "__main__":  # pragma: no cover - run by hand for a look at the fleet's logs
    raise SystemExit(subprocess.call(["pytest", "-s", __file__], env={**os.environ}))
