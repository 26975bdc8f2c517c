"""Pure: spot a CT-driven immersion diverter the battery is feeding, with no CT on the diverter.

A grid-CT diverter (Solic 200, iBoost, Eddi) takes whatever export its own clamp on the grid tails
sees, within a second. So when the battery discharges more than the house needs, the export it
creates never shows: the grid stays pinned near zero and the house load seen from the inverter and
the grid meter (``pv + battery + grid``) rises with the discharge. Without a diverter the same extra
discharge shows as export, and less discharge shows as import.

That difference is what a **probe** looks for. Three things start one while the battery discharges:

* an export that vanished: a reading shows export beyond ``band_w`` (a load went off: "the
  kettle goes off"), one within ``VANISH_S`` is back within ``band_w`` of zero, but the battery
  gave up less than half of it. Something took the rest: the diverter pouncing, or by coincidence
  a load switched on. The first step goes straight to the discharge less what was taken;
* a load seen to drop with the grid pinned (``DROP_S``): the inverter's own self-use gave up the
  first second of a load that went off and the diverter took the rest before the grid meter's next
  reading, so no reading shows the export (on a real house the diverter is quicker than the meter's
  poll). In a house where a probe found the diverter within ``KNOWN_S`` the probe starts at once and
  its first step goes straight down to the house's recent base need; elsewhere it is an ordinary
  probe, at most one per ``QUIET_S``;
* a quieter suspicion, held for ``TRIGGER_S``: the grid within ``band_w`` of zero and either PV
  there (the diverter's usual moment) or the load ``probe_w`` above its recent base. The first
  step is ``probe_w``.

The step is held for ``PROBE_S``. If the load fell by about the step while the grid stayed where
it was, that power was going to the diverter: the discharge stays capped and the next step down is
twice as big (or, if bigger, down to the house's recent base need), until a step shows up as
import (the diverter is off: from then on the cap is what the house itself needs, the grid reading
plus the discharge) or the cap is 0. The cap then follows the house up whenever the grid imports
(a diverter never runs on import) and is probed again after ``HOLD_S`` (``KNOWN_HOLD_S`` where a
load's drop does not show: setpoints written), at once when an export vanishes again, when the load
jumps with the grid pinned, or when it drops under the cap with the grid pinned; a probe whose
first step the house takes releases it.

A house with no diverter pays one step of import for ``PROBE_S`` per probe (300 W for 12 s is
1 Wh; the energy stays in the battery), and after a probe that found nothing the next one waits
``QUIET_S`` (``KNOWN_QUIET_S`` in a house where a probe found the diverter within ``KNOWN_S``; a
drop's probe has its own ``QUIET_S``): the hysteresis that keeps a load that rose with the
discharge by coincidence from being capped for long. A house known to have one pays more: a drop's
probe that finds the diverter idle imports what the house needs above its base for ``PROBE_S``.

Sign convention: battery discharge ``+``; grid import ``+``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

__all__ = ["GuardMemory", "GuardOutcome", "GuardParams", "guard"]

# How long a probe's step is held before its effect is read: the inverter acts on a setpoint
# within seconds (the controller's INVERTER_SETTLE_S is 10 s) and the diverter within one.
PROBE_S = 12.0
# How long the trigger must hold before a probe: not every passing reading.
TRIGGER_S = 10.0
# An export counts as vanished when the grid is back within the band this soon after it.
VANISH_S = 10.0
# A probe is read only on a battery reading taken at least SETTLE_S after its step began (the
# inverter polled every 5 s, acting within seconds); without one by PROBE_WAIT_S it reads nothing.
SETTLE_S = 6.0
PROBE_WAIT_S = 60.0
# A cap is probed again after this long, or after KNOWN_HOLD_S where a load's drop does not show
# (setpoints written, ``GuardParams.drops_show`` false): nothing else shows the diverter pouncing
# under a cap that followed a load up (seed day, setpoints, a second later: 115 Wh into the tank
# and 1,966 Wh of import with KNOWN_HOLD_S, 192 and 1,916 with HOLD_S; handed back, where drops
# show, 23 and 1,825 against 49 and 1,780: more import than it keeps in the battery).
HOLD_S = 300.0
KNOWN_HOLD_S = 60.0
# After a probe found no diverter: the next one no sooner than this ...
QUIET_S = 300.0
# ... or this, within KNOWN_S of the last time a probe found the diverter: in a house known to have
# one, probes pay, and the export it pounces on is missed whenever it is quicker than the meter.
# Even where a load's drop shows (``GuardParams.drops_show``): it shows only where the inverter's
# own self-use is slower than the diverter (seed day, handed back, a second later, with QUIET_S
# here: 36 Wh into the tank against 49, 33 Wh less import; but the backtest at 1-minute steps,
# where no drop shows, 1.17 kWh against 0.81).
KNOWN_QUIET_S = 60.0
KNOWN_S = 86_400.0
# A drop in the load seen (``pv + battery + grid``) of at least ``probe_w * SHARE`` below its peak of
# the last DROP_S, with the grid pinned and no export seen since the peak: the moment a diverter
# pounces on a load that went off (the inverter's own self-use follows the first second of it, the
# diverter takes the rest before the grid meter's next reading). A house known to have a diverter
# probes it at once (straight down to the house's recent base need); any other no sooner than its
# quiet time allows, with the ordinary step.
DROP_S = 20.0
# Share of a probe's step that must come off the load (grid unchanged) to call it the diverter's.
SHARE = 0.5
# The recent base load creeps up at most this fast (W/s), so a load step stands out above it.
BASE_CREEP_W_PER_S = 0.5


@dataclass(frozen=True)
class GuardParams:
    band_w: float = 150.0  # grid readings within this of zero count as pinned there
    probe_w: float = 300.0  # a probe's step down
    min_discharge_w: float = 200.0  # below this the battery feeds nothing worth a probe
    pv_min_w: float = 50.0
    # The inverter's own self-use is handed back between commands (``dispatcher.inverter_self_use``):
    # it follows the load, so a load going off shows as a drop of the load seen, which a house known
    # to have a diverter probes at once, and a cap is probed again after HOLD_S, not KNOWN_HOLD_S.
    drops_show: bool = False


@dataclass(frozen=True)
class GuardMemory:
    phase: Literal["watch", "probe", "capped"] = "watch"
    since: datetime | None = None  # start of the probe step, or of the cap
    from_w: float = 0.0  # discharge when the probe step began
    load0_w: float = 0.0  # load and grid when it began
    grid0_w: float = 0.0
    level_w: float = 0.0  # the cap in force (probe and capped)
    found: bool = False  # a probe of this chain of steps saw the diverter
    announced: bool = False  # the Event that a diverter is suspected went out; the next is the release
    diverted_w: float = 0.0  # what the probes saw going to it
    load_ref_w: float = 0.0  # the load when the cap was set
    step_w: float = 0.0  # the last probe step
    # The last export beyond the band while discharging, and the discharge then: to see it vanish.
    export_w: float = 0.0
    export_battery_w: float = 0.0
    export_at: datetime | None = None
    trigger_since: datetime | None = None
    quiet_until: datetime | None = None
    seen_at: datetime | None = None  # when a probe last found the diverter
    base_w: float | None = None
    at: datetime | None = None
    peak_w: float = 0.0  # the highest load seen within DROP_S, and when its battery reading was taken
    peak_at: datetime | None = None
    pinned_since: datetime | None = None  # the grid within the band since then
    drop_quiet_until: datetime | None = None  # a drop starts no probe before then (a house not known)


@dataclass(frozen=True)
class GuardOutcome:
    cap_w: float | None  # most the battery may discharge now (None: no cap)
    memory: GuardMemory
    detail: str | None = None  # what a person reads on the decision
    # (code, message) of an Event to publish: a diverter first seen in an episode, or a cap released.
    event: tuple[str, str] | None = None


def guard(
    now: datetime,
    battery_w: float,
    grid_w: float,
    pv_w: float | None,
    zero_grid: bool,
    memory: GuardMemory,
    params: GuardParams,
    battery_at: datetime | None = None,
) -> GuardOutcome:
    """One control cycle's look. ``zero_grid``: the goal in force zeroes the grid (the battery
    follows the house); under a planned or forced power there is nothing to guard.
    ``battery_at``: when the battery (and PV) reading was taken (None: now). The inverter is read
    less often than the grid meter, and a stale discharge read beside a fresh grid reading looks
    exactly like the signature (a load that fell with the grid unchanged), so nothing is judged on
    a battery reading older than the grid's change it is compared with."""
    read_at = now if battery_at is None else battery_at
    load = max(0.0, (pv_w or 0.0) + battery_w + grid_w)
    dt = 0.0 if memory.at is None else max(0.0, (now - memory.at).total_seconds())
    base = load if memory.base_w is None else min(load, memory.base_w + BASE_CREEP_W_PER_S * dt)
    m = replace(memory, base_w=base, at=now)
    # An export seen within VANISH_S, gone now, that the battery did not take away: what took it (W).
    recent = memory.export_at is not None and (now - memory.export_at).total_seconds() <= VANISH_S
    exported = memory.export_w if recent else 0.0
    taken = exported - max(0.0, memory.export_battery_w - battery_w) + min(grid_w, 0.0)
    if grid_w < -params.band_w and battery_w >= params.min_discharge_w:
        m = replace(m, export_w=-grid_w, export_battery_w=battery_w, export_at=now)
    pinned = abs(grid_w) <= params.band_w
    pinned_since = (m.pinned_since or now) if pinned else None
    # Steady: the battery was read while the grid was already pinned, so the load seen from the two is
    # one moment's (a battery reading from before the grid moved is not).
    steady = pinned_since is not None and read_at >= pinned_since
    m = replace(m, pinned_since=pinned_since)
    if steady and (m.peak_at is None or load >= m.peak_w or (read_at - m.peak_at).total_seconds() > DROP_S):
        m = replace(m, peak_w=load, peak_at=read_at)
    if not zero_grid:
        released = m.announced
        m = replace(m, phase="watch", trigger_since=None, found=False, diverted_w=0.0, announced=False)
        return GuardOutcome(None, m, event=_released() if released else None)

    discharging = battery_w >= params.min_discharge_w

    # The battery must have been read after the export, or its drop is not known yet.
    after = memory.export_at is not None and read_at > memory.export_at
    vanished = exported > 0 and after and discharging and pinned and taken >= exported * SHARE
    if vanished:
        m = replace(m, export_at=None)
    known = _known(now, m)
    # The load seen fell with the grid pinned, on a battery reading taken after the peak, with no
    # export seen since (an export the battery then followed is the house's own: no diverter).
    dropped = (
        discharging
        and steady
        and m.peak_at is not None
        and read_at > m.peak_at
        and load <= m.peak_w - params.probe_w * SHARE
        and (m.export_at is None or m.export_at < m.peak_at)
    )
    # The step down to the house's recent base need (what it drew with its loads off), at least probe_w.
    base_need = max(0.0, base - (pv_w or 0.0))
    big_step = max(params.probe_w, battery_w - base_need)

    if m.phase == "watch":
        if vanished:
            m = replace(m, found=False, diverted_w=0.0)
            return _probe(now, battery_w, grid_w, load, m, max(params.probe_w, min(taken, battery_w)))
        quiet = m.quiet_until is not None and now < m.quiet_until
        if dropped and known:
            return _probe(now, battery_w, grid_w, load, replace(m, found=False, diverted_w=0.0), big_step)
        if dropped and not (m.drop_quiet_until is not None and now < m.drop_quiet_until):
            m = replace(m, found=False, diverted_w=0.0, drop_quiet_until=_later(now, QUIET_S))
            return _probe(now, battery_w, grid_w, load, m, params.probe_w)
        pv_there = pv_w is not None and pv_w >= params.pv_min_w
        trigger = discharging and pinned and not quiet and (pv_there or load >= base + params.probe_w)
        if not trigger:
            return GuardOutcome(None, replace(m, trigger_since=None))
        since = m.trigger_since or now
        # Held long enough, and on a battery reading taken while it held (not one from before).
        if (now - since).total_seconds() < TRIGGER_S or read_at < since:
            return GuardOutcome(None, replace(m, trigger_since=since))
        return _probe(now, battery_w, grid_w, load, replace(m, found=False, diverted_w=0.0), params.probe_w)

    if m.phase == "probe":
        assert m.since is not None
        if vanished:  # a fresher, surer clue than the step under way: start again from it
            return _probe(now, battery_w, grid_w, load, m, max(params.probe_w, min(taken, battery_w)))
        waited = (now - m.since).total_seconds()
        settled = (read_at - m.since).total_seconds() >= SETTLE_S
        if waited < PROBE_S or (not settled and waited < PROBE_WAIT_S):
            return GuardOutcome(m.level_w, m, _probing(m))
        if not settled:
            return _end_probe(now, battery_w, grid_w, load, m)  # no battery reading since: nothing to read
        drop = m.from_w - battery_w
        if drop < params.probe_w * SHARE:
            # The battery did not follow the step (a limit, the reserve): nothing to read.
            return _end_probe(now, battery_w, grid_w, load, m)
        fell = m.load0_w - load
        rose = grid_w - m.grid0_w
        # The diverter's signature: the load fell by about the step, the grid stayed where it was.
        # A load that fell by far more (the house switched something off meanwhile) or a grid that
        # moved either way is not it.
        if pinned and abs(fell - drop) <= (1.0 - SHARE) * drop and abs(rose) <= (1.0 - SHARE) * drop:
            first = not m.announced
            m = replace(
                m, found=True, announced=True, diverted_w=m.diverted_w + fell, seen_at=now, quiet_until=None
            )
            if m.level_w <= 0.0:
                out = _cap(now, 0.0, load, m)
            else:
                # Twice the step, or at once down to the house's recent base need.
                out = _probe(now, battery_w, grid_w, load, m, max(2.0 * m.step_w, battery_w - base_need))
            if first:
                message = (
                    f"diverter suspected: {drop:.0f} W less discharge took {fell:.0f} W off the load with the grid "
                    f"unchanged, so it was going to a CT-driven diverter; discharge capped at {out.cap_w:.0f} W"
                )
                return replace(out, event=("diverter_suspected", message))
            return out
        return _end_probe(now, battery_w, grid_w, load, m)

    # capped
    capped_at = m.since
    assert capped_at is not None
    if grid_w > params.band_w:
        # Importing: a diverter never runs on import, so this is the house wanting more.
        level = max(m.level_w, battery_w + grid_w)
        m = replace(m, level_w=level, load_ref_w=load)
    jumped = pinned and discharging and load >= m.load_ref_w + params.probe_w * SHARE
    if vanished:
        return _probe(now, battery_w, grid_w, load, m, max(params.probe_w, min(taken, battery_w)))
    if dropped and m.level_w > base_need:
        return _probe(now, battery_w, grid_w, load, m, max(params.probe_w, battery_w - base_need))
    hold = HOLD_S if params.drops_show else KNOWN_HOLD_S
    if discharging and ((now - capped_at).total_seconds() >= hold or jumped):
        return _probe(now, battery_w, grid_w, load, m, params.probe_w)
    return GuardOutcome(m.level_w, m, _capped(m))


def _probe(now: datetime, battery_w: float, grid_w: float, load: float, m: GuardMemory, step_w: float) -> GuardOutcome:
    level = max(0.0, battery_w - step_w)
    m = replace(
        m,
        phase="probe",
        since=now,
        from_w=battery_w,
        load0_w=load,
        grid0_w=grid_w,
        level_w=level,
        step_w=step_w,
        trigger_since=None,
        peak_w=load,
        peak_at=now,
    )
    return GuardOutcome(level, m, _probing(m))


def _end_probe(now: datetime, battery_w: float, grid_w: float, load: float, m: GuardMemory) -> GuardOutcome:
    """The step went to the house (or nowhere to read). After a diverter was seen in this episode
    the diverter is off now: the cap is what the house needs. Else there is no diverter to guard."""
    if m.found:
        return _cap(now, max(0.0, battery_w + grid_w), load, m)
    was_capped = m.announced
    m = replace(
        m,
        phase="watch",
        since=None,
        trigger_since=None,
        announced=False,
        diverted_w=0.0,
        quiet_until=_later(now, KNOWN_QUIET_S if _known(now, m) else QUIET_S),
        peak_w=load,
        peak_at=now,
    )
    return GuardOutcome(None, m, event=_released() if was_capped else None)


def _cap(now: datetime, level: float, load: float, m: GuardMemory) -> GuardOutcome:
    # The next probe starts a new chain: if its first step finds the house taking it, the cap goes.
    m = replace(m, phase="capped", since=now, level_w=level, load_ref_w=load, found=False, peak_w=load, peak_at=now)
    return GuardOutcome(level, m, _capped(m))


def _probing(m: GuardMemory) -> str:
    return f"diverter probe: discharge stepped down to {m.level_w:.0f} W to see whether the load or the grid moves"


def _capped(m: GuardMemory) -> str:
    return f"diverter suspected: discharge capped at {m.level_w:.0f} W (the house's need without the diverter)"


def _released() -> tuple[str, str]:
    return ("diverter_released", "diverter cap released: the house takes the battery's discharge again")


def _known(now: datetime, m: GuardMemory) -> bool:
    """A probe found the diverter within the last KNOWN_S; a time after ``now`` (a clock that was
    ahead) is not a sighting."""
    return m.seen_at is not None and 0 <= (now - m.seen_at).total_seconds() <= KNOWN_S


def _later(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)
