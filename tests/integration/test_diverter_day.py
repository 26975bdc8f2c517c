"""The seed's diverter story on a simulated day (issue 13 item 2): "kettle goes off, the diverter
pounces, the battery drains into the hot water", with and without a CT on the diverter.

The seed house (``deploy/scenarios/seed-house.yaml``) on 21 April 2026 under the dispatcher's own
planner and controller (``services.devtools.sim_day``: the simulator's physics in one process, the
grid meter read every 2 s, the inverter every 5 s), with the simulator's Solic 200-like diverter
(``DIVERTER``: its own clamp, 20 W margin, starts above 100 W, 1 s reaction) and an inverter whose
own self-use leaves the grid be within 50 W and moves 300 W/s (``INVERTER``): the diverter is the
faster of the two, as the seed's was. The figure is the battery energy that went into the tank
(``Totals.battery_to_diverter_wh``: the battery's discharge beyond the house's other loads once PV
covered them, taken by the diverter).

Measured on this machine (Wh in the day; 2026-11-30, 2 shared cores, load about 4), the targets
the test holds:

| dispatcher | grid meter read | naive (no CT, guard off) | guard (no CT, default) | target | own CT |
|---|---|---|---|---|---|
| own self-use handed back | the second the load drops | 276 | 40 | <= 60 | 26 (<= 60) |
| own self-use handed back | a second later | 285 | 49 | <= 30 % of naive | |
| setpoints only | the second the load drops | 201 | 40 | <= 35 % of naive | |
| setpoints only | a second later | 868 | 115 | <= 25 % of naive | |

(The guard before the load-drop probe and the minute's re-probe of a cap under setpoints, same
day: 40, 207, 110, 461 Wh; the last three targets fail on it.)

The simulated loads step on the minute. When a grid reading falls on that second it sees the export
before the diverter takes it, and the guard caps as soon as the inverter's next reading shows the
battery did not take it away ("an export that vanished"). A reading a second later finds the grid
already pinned: handed back, the inverter's own self-use gave up its first second of the load (300
W/s) before the diverter took the rest, so the load seen drops with the grid pinned, and a house
where a probe has found the diverter probes at once, straight down to its recent base need. Writing
setpoints, the battery does not move on its own and nothing shows the drop: the guard has its
probes every minute (once found) and probes a cap every minute too, and the first finding of the
day (06:37 here, a fresh process) costs most of what is left. A house without a diverter, with the same config (a
second later, so no reading sees a load's last second): the guard's probes add 15 Wh of import and
32 commands in the day handed back, 7 Wh and 41 commands with setpoints only; targets 30 Wh and 100
commands. The house with the diverter imports about 1,780 Wh with the guard against 1,690 Wh naive
handed back (1,966 against 1,829 with setpoints; the planner's time limit moves these by ~10 Wh from
run to run): the probes' steps, while the battery keeps what the tank did not get (236 and 753 Wh)
for later.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.devtools.demo import SCENARIO as SEED
from services.devtools.sim_day import DayTrace, simulate_day
from shared.config import OngridConfig, load_config
from shared.config.loads import DiverterLoad
from shared.config.simulator import DiverterSection, SimMeter

DAY = datetime(2026, 4, 21, tzinfo=UTC)
DIVERTER = DiverterSection(margin_w=20.0, start_w=100.0, reaction_s=1.0)
INVERTER = {"self_use_band_w": 50.0, "ramp_w_per_s": 300.0}


def scenario(*, ct: bool, guard: bool = True, own: bool = True, diverter: bool = True) -> OngridConfig:
    cfg = load_config(SEED)
    assert cfg.simulator is not None
    sim = cfg.simulator
    meters = sim.meters + ((SimMeter(id="immersion-ct", position="diverter"),) if ct else ())
    sim = sim.model_copy(
        update={
            "diverter": DIVERTER if diverter else None,
            "meters": meters,
            "inverter": sim.inverter.model_copy(update=INVERTER),
        }
    )
    load = DiverterLoad(
        kind="diverter", id="immersion", meter="immersion-ct" if ct else None, detect_without_ct=guard
    )
    dispatcher = cfg.dispatcher.model_copy(update={"inverter_self_use": own})
    return cfg.model_copy(update={"simulator": sim, "loads": [load], "dispatcher": dispatcher})


def run(cfg: OngridConfig, offset_s: int) -> DayTrace:
    return simulate_day(cfg, DAY, meter_s=2, inverter_s=5, meter_offset_s=offset_s)


def into_tank(trace: DayTrace) -> float:
    assert trace.totals is not None
    return trace.totals.battery_to_diverter_wh


# (own self-use handed back, meter offset s, most Wh with the guard, or None, most share of naive)
ROWS = [
    (True, 0, 60.0, None),
    (True, 1, None, 0.30),
    (False, 0, None, 0.35),
    (False, 1, None, 0.25),
]


@pytest.mark.parametrize(("own", "offset", "most_wh", "most_share"), ROWS)
def test_the_guard_keeps_the_battery_out_of_the_tank(
    own: bool, offset: int, most_wh: float | None, most_share: float | None
) -> None:
    naive_trace = run(scenario(ct=False, guard=False, own=own), offset)
    naive = into_tank(naive_trace)
    trace = run(scenario(ct=False, own=own), offset)
    guarded = into_tank(trace)
    assert naive_trace.totals is not None and trace.totals is not None
    print(
        f"own {own}, offset {offset}: naive {naive:.0f} Wh, guard {guarded:.0f} Wh, import "
        f"{naive_trace.totals.import_wh:.0f} -> {trace.totals.import_wh:.0f} Wh, {trace.reasons}"
    )
    assert naive >= 150.0  # the story reproduced: the naive controller feeds the tank
    assert trace.reasons.get("diverter_cap", 0) > 0
    if most_wh is not None:
        assert guarded <= most_wh
    if most_share is not None:
        assert guarded <= most_share * naive


def test_with_its_own_ct_it_stays_exact() -> None:
    trace = run(scenario(ct=True), 0)
    print(f"CT: {into_tank(trace):.0f} Wh, {trace.reasons}")
    assert into_tank(trace) <= 60.0
    assert "diverter_cap" not in trace.reasons  # the guard is for a diverter without a CT only


@pytest.mark.parametrize("own", [True, False])
def test_a_house_without_a_diverter_barely_notices_the_guard(own: bool) -> None:
    off = run(scenario(ct=False, guard=False, own=own, diverter=False), 1)
    on = run(scenario(ct=False, own=own, diverter=False), 1)
    assert off.totals is not None and on.totals is not None
    extra_import = on.totals.import_wh - off.totals.import_wh
    print(f"no diverter, own {own}: import +{extra_import:.0f} Wh, commands {off.commands} -> {on.commands}")
    assert extra_import <= 30.0
    assert on.commands - off.commands <= 100
