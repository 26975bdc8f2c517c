"""The guard against a CT-driven diverter fed by the battery (``core.diverter_guard``), as step tables.

Each table is a run of control cycles: (seconds, battery W, grid W, PV W) in, (phase, cap W,
event code) out. The readings are what a house would show under the cap of the row before: with a
diverter, a lower discharge takes the same power off the load with the grid unchanged; without
one, it shows as import.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.dispatcher.core import diverter_guard as g
from services.dispatcher.core.controller import ControlParams, Memory, control, diverter_guard_params
from services.dispatcher.core.diverter_guard import GuardMemory, GuardParams, guard
from services.dispatcher.core.snapshot import ModeState, Snapshot
from services.dispatcher.diverter_seen import DiverterFileError, load_seen, save_seen
from services.dispatcher.service import Dispatcher, diverter_path
from shared.config import OngridConfig
from shared.config.loads import DiverterLoad
from shared.energy.battery import BatteryModel
from shared.messages import DispatcherModeName

T0 = datetime(2026, 4, 21, 17, 0, tzinfo=UTC)
P = GuardParams()

Row = tuple[float, float, float, float, str, float | None, str | None]

# The seed's story: the kettle goes off, the diverter pounces (the export vanishes though the
# battery still gives 2 kW), the first step goes straight to the discharge less what was taken; the
# load falls with it (the diverter), the next step (twice as big) reaches 0 W and shows as import:
# the house needs 200 W, which becomes the cap; the cap follows the house up when it imports.
POUNCE: list[Row] = [
    (0, 2000, 0, 500, "watch", None, None),
    (2, 2000, -1800, 500, "watch", None, None),
    (4, 2000, -20, 500, "probe", 220, None),
    (10, 220, -20, 500, "probe", 220, None),  # within PROBE_S: nothing read yet
    (16, 220, -20, 500, "probe", 0, "diverter_suspected"),
    (28, 0, 200, 500, "capped", 200, None),
    (30, 200, 0, 500, "capped", 200, None),
    (40, 200, 400, 500, "capped", 600, None),
    (42, 600, 0, 500, "capped", 600, None),
]

# No diverter: PV there, the grid held at zero by the battery. A probe after TRIGGER_S shows its step
# as import: no cap, and no new probe for QUIET_S (the hysteresis; a house where a probe found the
# diverter waits KNOWN_QUIET_S).
NO_DIVERTER: list[Row] = [
    (0, 1500, 0, 300, "watch", None, None),
    (10, 1500, 0, 300, "probe", 1200, None),
    (22, 1200, 300, 300, "watch", None, None),
    (24, 1500, 0, 300, "watch", None, None),
    (40, 1500, 0, 300, "watch", None, None),
    (321, 1500, 0, 300, "watch", None, None),
    (323, 1500, 0, 300, "watch", None, None),
    (333, 1500, 0, 300, "probe", 1200, None),
]

# An export that vanished because a load switched on by coincidence: the probe's step is imported,
# so the cap goes at once and no Event was ever raised.
COINCIDENCE: list[Row] = [
    (0, 1000, 0, 0, "watch", None, None),
    (2, 1000, -1500, 0, "watch", None, None),
    (4, 1000, 0, 0, "probe", 0, None),
    (16, 0, 1000, 0, "watch", None, None),
]

# A cap in force is probed again (after KNOWN_HOLD_S here: the default params write setpoints, where
# a load's drop does not show); when the house takes that step the cap is released.
RELEASE: list[Row] = [
    (0, 2000, 0, 500, "watch", None, None),
    (2, 2000, -1800, 500, "watch", None, None),
    (4, 2000, -20, 500, "probe", 220, None),
    (16, 220, -20, 500, "probe", 0, "diverter_suspected"),
    (28, 0, 200, 500, "capped", 200, None),
    (30 + g.KNOWN_HOLD_S, 200, 0, 500, "probe", 0, None),
    (42 + g.KNOWN_HOLD_S, 0, 200, 500, "watch", None, "diverter_released"),
]


# No diverter: during a probe the house switches something off, so the load falls by far more than
# the step (and the grid shows export): not the diverter's signature, no cap.
HOUSE_DROP: list[Row] = [
    (0, 1500, 0, 300, "watch", None, None),
    (10, 1500, 0, 300, "probe", 1200, None),
    (22, 1200, -1200, 300, "watch", None, None),
]


@pytest.mark.parametrize(
    "table",
    [POUNCE, NO_DIVERTER, COINCIDENCE, RELEASE, HOUSE_DROP],
    ids=["pounce", "none", "coincidence", "release", "house_drop"],
)
def test_step_table(table: list[Row]) -> None:
    memory = GuardMemory()
    for seconds, battery, grid, pv, phase, cap, event in table:
        out = guard(T0 + timedelta(seconds=seconds), battery, grid, pv, True, memory, P)
        memory = out.memory
        got = (memory.phase, out.cap_w, out.event[0] if out.event else None)
        assert got == (phase, cap, event), f"at {seconds} s: {got}"


# A house where a probe found the diverter within the day (``KNOWN``), the inverter's own self-use
# handed back, in the evening (no PV), the grid meter read a second after the cooker goes off: the
# inverter gave up 300 W in that second, the diverter took the other 2 kW, so no reading shows the
# export. The load seen fell 290 W below its peak with the grid pinned: a probe at once, straight down
# to the house's recent base need (303 W: its 300 W base plus 0.5 W/s of creep); the load falls by
# the whole step with the grid unchanged (the diverter's), the next step reaches 0 W and shows as
# import: the cap is the house's need, 300 W. When the cooker comes back on the cap follows the
# import up, and when it goes off again the drop under the cap is probed the same way.
KNOWN = GuardMemory(seen_at=T0 - timedelta(hours=1), quiet_until=T0 + timedelta(minutes=10))
DROP_KNOWN: list[Row] = [
    (0, 300, 0, 0, "watch", None, None),
    (2, 2700, 0, 0, "watch", None, None),  # the cooker on: the battery follows it
    (4, 2700, 0, 0, "watch", None, None),
    (6, 2400, 10, 0, "probe", 303, None),  # the cooker off, the diverter pounced between readings
    (18, 303, 10, 0, "probe", 0, "diverter_suspected"),
    (30, 0, 300, 0, "capped", 300, None),
    (32, 300, 2400, 0, "capped", 2700, None),  # the cooker on again: the cap follows the import
    (34, 2700, 0, 0, "capped", 2700, None),
    (38, 2400, 10, 0, "probe", 304, None),  # off again: down to the base need (300 W at 30 s, 8 s of creep)
]

# No diverter, not known: a 300 W load goes off between two grid readings and the inverter follows
# it, so the load seen drops with the grid pinned. A probe with the ordinary step: the house imports
# it, the probe ends (capped below its need for that one step only) and a second drop within
# QUIET_S starts no probe; one after it does.
DROP_NO_DIVERTER: list[Row] = [
    (0, 1500, 0, 0, "watch", None, None),
    (2, 1200, 0, 0, "probe", 900, None),
    (14, 900, 300, 0, "watch", None, None),
    (16, 1200, 0, 0, "watch", None, None),
    (20, 1500, 0, 0, "watch", None, None),
    (22, 1200, 0, 0, "watch", None, None),  # within QUIET_S of the last drop's probe
    (303, 1500, 0, 0, "watch", None, None),
    (305, 1200, 0, 0, "probe", 900, None),
]

# No diverter, a big load off: the grid reading shows the export, then the inverter's own self-use
# takes it away. The load seen fell with the grid pinned again, but after an export the battery
# followed: the house's own, no probe (even in a house known to have a diverter).
HOUSE_FOLLOWS: list[Row] = [
    (0, 2500, 0, 0, "watch", None, None),
    (2, 2500, -2000, 0, "watch", None, None),
    (4, 500, 0, 0, "watch", None, None),
    (6, 500, 0, 0, "watch", None, None),
]


# Seen "in the future" (written while the clock was ahead, or by an accelerated simulator run
# sharing the state directory): not a sighting, the house is not known to have a diverter.
SEEN_AHEAD = GuardMemory(seen_at=T0 + timedelta(hours=1))


@pytest.mark.parametrize(
    ("table", "start"),
    [
        (DROP_KNOWN, KNOWN),
        (DROP_NO_DIVERTER, GuardMemory()),
        (HOUSE_FOLLOWS, KNOWN),
        (DROP_NO_DIVERTER, SEEN_AHEAD),
    ],
    ids=["drop_known", "drop_no_diverter", "house_follows", "seen_ahead_is_not_known"],
)
def test_drop_step_table(table: list[Row], start: GuardMemory) -> None:
    memory = start
    for seconds, battery, grid, pv, phase, cap, event in table:
        out = guard(T0 + timedelta(seconds=seconds), battery, grid, pv, True, memory, P)
        memory = out.memory
        got = (memory.phase, out.cap_w if out.cap_w is None else round(out.cap_w), out.event[0] if out.event else None)
        assert got == (phase, cap, event), f"at {seconds} s: {got}"


@pytest.mark.parametrize(
    ("age_s", "known"),
    [(-1.0, False), (-86_400.0, False), (0.0, True), (g.KNOWN_S, True), (g.KNOWN_S + 1, False)],
)
def test_known_means_seen_within_the_last_day_not_ahead(age_s: float, known: bool) -> None:
    assert g._known(T0, GuardMemory(seen_at=T0 - timedelta(seconds=age_s))) is known


# A cap in force (POUNCE up to 28 s: 200 W). Writing setpoints, a load going off under the cap does
# not show, so the cap is probed again after KNOWN_HOLD_S; handed back, after HOLD_S.
CAP_SETPOINTS: list[Row] = [
    *POUNCE[:6],
    (30, 200, 0, 500, "capped", 200, None),
    (28 + g.KNOWN_HOLD_S, 200, 0, 500, "probe", 0, None),
]
CAP_HANDED_BACK: list[Row] = [
    *POUNCE[:6],
    (30, 200, 0, 500, "capped", 200, None),
    (28 + g.KNOWN_HOLD_S, 200, 0, 500, "capped", 200, None),
    (28 + g.HOLD_S, 200, 0, 500, "probe", 0, None),
]


@pytest.mark.parametrize(
    ("table", "drops_show"), [(CAP_SETPOINTS, False), (CAP_HANDED_BACK, True)], ids=["setpoints", "handed_back"]
)
def test_a_cap_is_probed_again_sooner_where_drops_do_not_show(table: list[Row], drops_show: bool) -> None:
    params = GuardParams(drops_show=drops_show)
    memory = GuardMemory()
    for seconds, battery, grid, pv, phase, cap, event in table:
        out = guard(T0 + timedelta(seconds=seconds), battery, grid, pv, True, memory, params)
        memory = out.memory
        assert (memory.phase, out.cap_w, out.event[0] if out.event else None) == (phase, cap, event), f"at {seconds} s"


def test_the_controller_tells_the_guard_whether_drops_show() -> None:
    load = DiverterLoad(kind="diverter", id="immersion")
    assert diverter_guard_params((load,), inverter_self_use=True) == GuardParams(drops_show=True)
    assert diverter_guard_params((load,)) == GuardParams(drops_show=False)


# After an import the inverter ramps the battery up (known house): the first pinned grid reading
# comes beside a battery reading taken while the grid still imported, so the load seen from the two
# looks 1.4 kW lower than it is. Not a drop: nothing is judged on a battery reading from before the
# grid was pinned; the next battery reading, taken while pinned, shows the load as it was.
RAMP: list[tuple[float, float, float, float, float, str, float | None]] = [
    (0, 0, 2500, 0, 0, "watch", None),
    (2, 0, 2500, 0, 0, "watch", None),
    (4, 3, 1000, 1500, 0, "watch", None),  # a load came on: import while the inverter ramps
    (6, 3, 1000, 100, 0, "watch", None),  # pinned again, the battery still read from 3 s
    (8, 8, 2500, 10, 0, "watch", None),
]


def test_a_ramp_read_late_is_not_a_drop() -> None:
    memory = KNOWN
    for seconds, read_at, battery, grid, pv, phase, cap in RAMP:
        out = guard(
            T0 + timedelta(seconds=seconds), battery, grid, pv, True, memory, P, T0 + timedelta(seconds=read_at)
        )
        memory = out.memory
        assert (memory.phase, out.cap_w) == (phase, cap), f"at {seconds} s"


# The inverter is read every 5 s, the grid every 2 s (battery read at, seconds). Without a diverter
# the inverter's own self-use took the export away at once, but its reading still shows the old
# discharge: nothing is judged until a reading taken after the export, which shows the drop.
STALE: list[tuple[float, float, float, float, float, str, float | None]] = [
    (0, 0, 2000, 0, 500, "watch", None),
    (2, 0, 2000, -1800, 500, "watch", None),
    (4, 0, 2000, 10, 500, "watch", None),  # looks like the pounce, but the battery reading is from 0 s
    (6, 5, 200, 10, 500, "watch", None),  # read at 5 s: the battery took the export away itself
]


def test_a_stale_battery_reading_is_not_a_diverter() -> None:
    memory = GuardMemory()
    for seconds, read_at, battery, grid, pv, phase, cap in STALE:
        out = guard(
            T0 + timedelta(seconds=seconds), battery, grid, pv, True, memory, P, T0 + timedelta(seconds=read_at)
        )
        memory = out.memory
        assert (memory.phase, out.cap_w) == (phase, cap), f"at {seconds} s"


def test_the_suspicion_names_the_cap() -> None:
    memory = GuardMemory()
    out = None
    for seconds, battery, grid, pv, *_ in POUNCE[:5]:
        out = guard(T0 + timedelta(seconds=seconds), battery, grid, pv, True, memory, P)
        memory = out.memory
    assert out is not None and out.event is not None
    assert "discharge capped at 0 W" in out.event[1]
    assert out.detail is not None and out.detail.startswith("diverter probe")


def test_a_planned_power_is_not_guarded_and_releases_a_cap() -> None:
    memory = GuardMemory()
    for seconds, battery, grid, pv, *_ in RELEASE[:5]:
        memory = guard(T0 + timedelta(seconds=seconds), battery, grid, pv, True, memory, P).memory
    assert memory.phase == "capped"
    out = guard(T0 + timedelta(seconds=40), 200, 0, 500, False, memory, P)
    assert (out.cap_w, out.memory.phase, out.event and out.event[0]) == (None, "watch", "diverter_released")


@pytest.mark.parametrize(
    ("load", "guarded"),
    [
        (DiverterLoad(kind="diverter", id="immersion"), True),
        (DiverterLoad(kind="diverter", id="immersion", meter="imm"), False),  # its own CT: exact
        (DiverterLoad(kind="diverter", id="immersion", battery_may_feed=True), False),
        (DiverterLoad(kind="diverter", id="immersion", detect_without_ct=False), False),
    ],
)
def test_the_guard_is_on_for_a_diverter_without_ct_only(load: DiverterLoad, guarded: bool) -> None:
    assert (diverter_guard_params((load,)) is not None) is guarded


B = BatteryModel(capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000, floor_pct=10, reserve_pct=20)


def test_the_controller_caps_the_discharge_says_why_and_stops_handing_back() -> None:
    params = ControlParams(battery=B, loads=(DiverterLoad(kind="diverter", id="immersion"),))
    memory = Memory()
    decision = None
    for seconds, battery, grid, pv, *_ in POUNCE[:5]:
        now = T0 + timedelta(seconds=seconds)
        snap = Snapshot(
            now=now,
            inverter_at=now,
            meter_at=now,
            soc_pct=60,
            battery_w=battery,
            grid_w=grid,
            pv_w=pv,
            mode=ModeState(DispatcherModeName.SELF_USE),
        )
        decision, memory = control(snap, None, memory, params)
    assert decision is not None
    assert decision.reason == "diverter_cap"
    assert decision.commanding and decision.battery_w == 0.0
    assert decision.numbers["diverter_cap_w"] == 0.0
    assert decision.event is not None and decision.event[0] == "diverter_suspected"
    assert decision.detail is not None and "diverter" in decision.detail
    # The same readings with the diverter on its own CT: the inverter's self-use is handed back.
    params_ct = ControlParams(battery=B, loads=(DiverterLoad(kind="diverter", id="immersion", meter="imm"),))
    decision_ct, _ = control(snap, None, Memory(), params_ct)
    assert decision_ct.reason == "self_use" and not decision_ct.commanding


# -- a house known to have a diverter stays known across a restart --------------------------------


def _cfg(state_dir: Path, **diverter: object) -> OngridConfig:
    return OngridConfig.model_validate(
        {
            "inverters": [{"id": "inv1", "model": "sofar_me3000sp", "battery": "bat1",
                           "transport": {"kind": "modbus_tcp", "host": "127.0.0.1"}}],
            "batteries": [{"id": "bat1", "usable_kwh": 10.4, "transport": {"kind": "modbus_tcp", "host": "127.0.0.1"}}],
            "dispatcher": {"state_dir": str(state_dir)},
            "loads": [{"id": "immersion", "kind": "diverter"} | diverter],
        }
    )  # fmt: skip


def test_when_the_diverter_was_seen_survives_a_restart(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _cfg(tmp_path)
    path = diverter_path(cfg)
    assert load_seen(path, T0) is None
    first = Dispatcher(cfg, bus=None)  # type: ignore[arg-type]
    assert first.memory.diverter.seen_at is None
    # A probe finds the diverter (POUNCE): the time it did is written, and read by the next process.
    memory = first.memory.diverter
    for seconds, battery, grid, pv, *_ in POUNCE[:5]:
        memory = guard(T0 + timedelta(seconds=seconds), battery, grid, pv, True, memory, P).memory
    assert memory.seen_at == T0 + timedelta(seconds=16)
    first.memory = replace(first.memory, diverter=memory)
    first._save_seen()
    again = Dispatcher(cfg, bus=None)  # type: ignore[arg-type]
    assert again.memory.diverter.seen_at == T0 + timedelta(seconds=16)
    # Known, it probes a load's drop at once (DROP_KNOWN's first rows from the restored memory).
    out = None
    memory = again.memory.diverter
    for seconds, battery, grid, pv, *_ in DROP_KNOWN[:4]:
        out = guard(T0 + timedelta(minutes=1, seconds=seconds), battery, grid, pv, True, memory, P)
        memory = out.memory
    assert out is not None and memory.phase == "probe" and out.cap_w is not None and out.cap_w < 1000
    # A file it cannot read is moved aside, and the diverter is not known.
    path.write_text('{"version": 1, "seen_at": "yesterday"}')
    with pytest.raises(DiverterFileError, match="seen_at is not an ISO time"):
        load_seen(path, T0)
    assert Dispatcher(cfg, bus=None).memory.diverter.seen_at is None  # type: ignore[arg-type]
    assert [p.name for p in tmp_path.iterdir() if ".bad-" in p.name]
    # A time after now is ignored, with a warning naming the file and the time.
    ahead = datetime.now(UTC) + timedelta(days=2)
    save_seen(path, ahead)
    with caplog.at_level(logging.WARNING, logger="ongrid.dispatcher"):
        assert Dispatcher(cfg, bus=None).memory.diverter.seen_at is None  # type: ignore[arg-type]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(path) in m and ahead.isoformat() in m and "ignored" in m for m in warned), warned
    assert load_seen(path, ahead) == ahead  # not after now: kept
    # With the diverter's own CT there is no guard and nothing is read.
    save_seen(path, T0)
    assert Dispatcher(_cfg(tmp_path, meter="imm"), bus=None).memory.diverter.seen_at is None  # type: ignore[arg-type]
