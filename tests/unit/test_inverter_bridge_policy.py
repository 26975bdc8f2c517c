"""The inverter bridge's pure decisions: clamping, quantising, the write budget, replays, the
lease watchdog, heartbeats and verification, as step tables and hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.inverter_bridge.budget import WriteBudget
from services.inverter_bridge.limits import (
    AUTO,
    CHARGE,
    DISCHARGE,
    STANDBY,
    BmsLimits,
    InverterLimits,
    clamp,
    fresh_bms,
    quantise,
)
from services.inverter_bridge.policy import ActionKind, CommandPolicy, Verdict
from services.inverter_bridge.verify import Verification
from shared.config import InverterConfig
from shared.messages import (
    AckStatus,
    BatteryLimits,
    BatteryState,
    CommandMode,
    InverterCommand,
    InverterControl,
    InverterState,
    RunningState,
)
from shared.registers import encode_write, load_map

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LIMITS = InverterLimits(max_charge_w=3000, max_discharge_w=2500, quantum_w=50)
REGMAP = load_map("sofar_me3000sp")


def cmd(mode: CommandMode, power_w: float = 0.0, *, id: str | None = None, **kw: object) -> InverterCommand:
    extra = {"id": id} if id else {}
    return InverterCommand(ts=T0, mode=mode, power_w=power_w, **extra, **kw)  # type: ignore[arg-type]


def policy(budget: int = 100, heartbeat_s: float = 9.0, verify_s: float = 30.0) -> CommandPolicy:
    return CommandPolicy("inv1", LIMITS, WriteBudget(budget, T0.date()), heartbeat_s=heartbeat_s, verify_s=verify_s)


def state(ts: datetime, battery_w: float, grid_w: float = 0.0) -> InverterState:
    return InverterState(
        ts=ts, device="inv1", model="sofar_me3000sp", running_state=RunningState.WAIT,
        battery_power_w=battery_w, battery_soc_pct=50, battery_voltage_v=50, battery_temp_c=20,
        grid_power_w=grid_w, grid_voltage_v=240, grid_frequency_hz=50, load_power_w=500, pv_power_w=0,
        pv_energy_today_wh=0, export_energy_today_wh=0, import_energy_today_wh=0, load_energy_today_wh=0,
        pv_energy_total_wh=0, export_energy_total_wh=0, import_energy_total_wh=0, load_energy_total_wh=0,
    )  # fmt: skip


def execute(p: CommandPolicy, command: InverterCommand, now: datetime, accepted: bool = True) -> Verdict:
    """Do what the service does with a decision, with the inverter answering ``accepted``."""
    d = p.decide(command, now, None)
    if d.verdict is Verdict.EXECUTE:
        assert d.setpoint is not None
        p.will_write(d.setpoint, now)
        p.written(d, now, accepted)
        p.ack(d, now, AckStatus.ACCEPTED if accepted else AckStatus.REJECTED)
    elif d.verdict is Verdict.SKIP:
        p.skipped(d, now)
        p.ack(d, now, AckStatus.ACCEPTED)
    elif d.verdict is Verdict.REJECT:
        p.rejected(d, now)
        p.ack(d, now, AckStatus.REJECTED)
    return d.verdict


# ----------------------------------------------------------------------------------- clamping


@pytest.mark.parametrize(
    ("mode", "power", "bms", "field", "value", "clamped"),
    [
        (CommandMode.CHARGE, 1000, None, CHARGE, 1000, False),
        (CommandMode.CHARGE, 1020, None, CHARGE, 1000, False),  # quantised to 50 W
        (CommandMode.CHARGE, 5000, None, CHARGE, 3000, True),  # inverter limit
        (CommandMode.DISCHARGE, 2999, None, DISCHARGE, 2500, True),  # its own discharge limit
        (CommandMode.CHARGE, 1000, BmsLimits(480, 3000), CHARGE, 450, True),  # BMS: floor to a quantum
        (CommandMode.CHARGE, 1000, BmsLimits(3000, 3000, charge_allowed=False), STANDBY, None, True),
        (CommandMode.DISCHARGE, 800, BmsLimits(3000, 3000, temp_min_c=-15), STANDBY, None, True),
        (CommandMode.CHARGE, 800, BmsLimits(3000, 3000, temp_min_c=-2), STANDBY, None, True),  # no charge < 0 degC
        (CommandMode.DISCHARGE, 800, BmsLimits(3000, 3000, temp_min_c=-2), DISCHARGE, 800, False),
        (CommandMode.CHARGE, 20, None, STANDBY, None, False),  # rounds to 0 W: standby
        (CommandMode.STANDBY, 0, None, STANDBY, None, False),
        (CommandMode.AUTO, 0, None, AUTO, 0, False),
        (CommandMode.SELF_USE, 0, None, AUTO, 0, False),
    ],
)
def test_clamp_table(
    mode: CommandMode, power: float, bms: BmsLimits | None, field: str, value: int | None, clamped: bool
) -> None:
    result = clamp(cmd(mode, power), LIMITS, bms)
    assert (result.setpoint.field, result.setpoint.value, result.clamped) == (field, value, clamped)
    assert bool(result.reasons) == clamped


def test_grid_target_uses_the_vendor_sign_and_its_bounds() -> None:
    import_500 = clamp(cmd(CommandMode.GRID_TARGET, grid_target_w=500), LIMITS, None).setpoint
    assert (import_500.field, import_500.value, import_500.grid_target_w) == (AUTO, -500, 500.0)
    export = clamp(cmd(CommandMode.GRID_TARGET, grid_target_w=-20_000), LIMITS, None)
    assert export.setpoint.value == 9950 and export.clamped  # 9999 floored to the 50 W quantum


def test_limits_from_config_never_exceed_the_registers_bounds() -> None:
    cfg = InverterConfig.model_validate(
        {"id": "inv1", "transport": {"kind": "modbus_tcp", "host": "x"}, "max_charge_w": 6000, "max_discharge_w": 2000}
    )
    limits = InverterLimits.from_config(cfg, REGMAP)
    assert (limits.max_charge_w, limits.max_discharge_w, limits.grid_target_max_w) == (3000, 2000, 9999)


def test_bms_limits_come_from_the_latest_fresh_state() -> None:
    bms = BatteryState(
        ts=T0, device="bat1", voltage_v=51.0, current_a=0, power_w=0, soc_pct=50,
        limits=BatteryLimits(charge_current_a=20, discharge_current_a=50, charge_allowed=False),
    )  # fmt: skip
    limits = fresh_bms(bms, T0 + timedelta(seconds=10))
    assert limits is not None and (limits.charge_w, limits.discharge_w, limits.charge_allowed) == (1020, 2550, False)
    assert fresh_bms(bms, T0 + timedelta(minutes=10)) is None
    assert fresh_bms(None, T0) is None


modes = st.sampled_from(list(CommandMode))
bms_limits = st.none() | st.builds(
    BmsLimits,
    charge_w=st.floats(0, 10_000),
    discharge_w=st.floats(0, 10_000),
    charge_allowed=st.booleans(),
    discharge_allowed=st.booleans(),
    temp_min_c=st.none() | st.floats(-30, 60),
    temp_max_c=st.none() | st.floats(-30, 60),
)


@given(mode=modes, power=st.floats(0, 100_000), target=st.floats(-100_000, 100_000), bms=bms_limits,
       quantum=st.sampled_from([1.0, 10.0, 50.0, 100.0, 333.0]))  # fmt: skip
def test_no_setpoint_outside_limits_and_never_both_directions(
    mode: CommandMode, power: float, target: float, bms: BmsLimits | None, quantum: float
) -> None:
    limits = InverterLimits(max_charge_w=3000, max_discharge_w=2500, quantum_w=quantum)
    sp = clamp(cmd(mode, power, grid_target_w=target), limits, bms).setpoint
    # One register, one value: a setpoint is a charge, a discharge, standby or a grid target, never two.
    assert sp.field in (CHARGE, DISCHARGE, STANDBY, AUTO)
    if sp.field == CHARGE:
        assert 0 < sp.value <= limits.max_charge_w  # type: ignore[operator]
        assert mode is CommandMode.CHARGE
        if bms is not None:
            assert bms.charge_allowed and sp.value <= bms.charge_w  # type: ignore[operator]
    if sp.field == DISCHARGE:
        assert 0 < sp.value <= limits.max_discharge_w  # type: ignore[operator]
        assert mode is CommandMode.DISCHARGE
        if bms is not None:
            assert bms.discharge_allowed and sp.value <= bms.discharge_w  # type: ignore[operator]
    if sp.field == AUTO:
        assert abs(sp.value) <= limits.grid_target_max_w  # type: ignore[arg-type]
    # Whatever comes out, the register map accepts it.
    encode_write(REGMAP, sp.field, sp.value)


@given(power=st.floats(0, 10_000), quantum=st.floats(1, 500), cap=st.floats(0, 10_000))
def test_quantise_is_a_multiple_never_above_the_cap(power: float, quantum: float, cap: float) -> None:
    q = quantise(power, quantum, cap)
    assert 0 <= q <= cap + 1e-6
    assert abs(q / quantum - round(q / quantum)) < 1e-6 or q == int(q)


# ----------------------------------------------------------------------------------- step tables

H = timedelta(seconds=1)


def test_step_table_writes_skips_refusals_and_replays() -> None:
    p = policy(budget=3)
    steps = [
        # (seconds, command, expected verdict, control after, writes used after)
        (0, cmd(CommandMode.CHARGE, 1000, id="a"), Verdict.EXECUTE, InverterControl.PASSIVE, 1),
        (5, cmd(CommandMode.CHARGE, 1010, id="b"), Verdict.SKIP, InverterControl.PASSIVE, 1),  # same after quantum
        (6, cmd(CommandMode.CHARGE, 1000, id="a"), Verdict.REPLAY, InverterControl.PASSIVE, 1),
        (7, cmd(CommandMode.DISCHARGE, 500, id="c"), Verdict.EXECUTE, InverterControl.PASSIVE, 2),
        (8, cmd(CommandMode.STANDBY, id="d"), Verdict.EXECUTE, InverterControl.PASSIVE, 3),
        (9, cmd(CommandMode.CHARGE, 800, id="e"), Verdict.REJECT, InverterControl.PASSIVE, 3),  # budget
        (9, cmd(CommandMode.STANDBY, id="f"), Verdict.SKIP, InverterControl.PASSIVE, 3),  # no write needed
        (10, cmd(CommandMode.SELF_USE, id="g"), Verdict.SKIP, InverterControl.SELF_USE, 3),  # released, no write
        (11, cmd(CommandMode.SELF_USE, id="h"), Verdict.SKIP, InverterControl.SELF_USE, 3),
    ]
    for seconds, command, verdict, control, used in steps:
        assert execute(p, command, T0 + seconds * H) is verdict, command.id
        assert (p.control, p.budget.used) == (control, used), command.id
    assert (p.budget.skipped_noop, p.budget.refused_budget) == (4, 1)
    assert p.budget.writes == {CHARGE: 1, DISCHARGE: 1, STANDBY: 1}


def test_expired_commands_are_refused_and_remembered() -> None:
    p = policy()
    late = cmd(CommandMode.CHARGE, 1000, id="x", expires_at=T0)
    assert execute(p, late, T0 + H) is Verdict.REJECT
    assert p.decide(late, T0 + 2 * H, None).verdict is Verdict.REPLAY
    assert p.budget.used == 0


def test_an_inverter_refusal_leaves_nothing_confirmed() -> None:
    p = policy()
    assert execute(p, cmd(CommandMode.CHARGE, 1000), T0, accepted=False) is Verdict.EXECUTE
    assert p.confirmed is None and p.control is InverterControl.UNKNOWN
    # The same setpoint is written again, not skipped.
    assert p.decide(cmd(CommandMode.CHARGE, 1000), T0 + H, None).verdict is Verdict.EXECUTE


def test_lease_heartbeats_and_handback_over_time() -> None:
    p = policy(heartbeat_s=2)
    execute(p, cmd(CommandMode.DISCHARGE, 1000, lease_s=10), T0)
    timeline: list[tuple[float, list[ActionKind]]] = []
    for tenth in range(0, 130, 5):
        now = T0 + timedelta(seconds=tenth / 10)
        actions = [a.kind for a in p.tick(now)]
        for kind in actions:
            if kind is ActionKind.HEARTBEAT:
                p.heartbeat_sent(now, ok=True)
            if kind is ActionKind.HANDBACK:
                p.handed_back(now)
        if actions:
            timeline.append((tenth / 10, actions))
    beats = [t for t, a in timeline if ActionKind.HEARTBEAT in a]
    assert beats == [2.0, 4.0, 6.0, 8.0]
    assert [t for t, a in timeline if ActionKind.HANDBACK in a] == [10.0]
    assert p.control is InverterControl.SELF_USE and p.tick(T0 + 20 * H) == []


def test_renewal_extends_the_lease_without_writing() -> None:
    p = policy()
    execute(p, cmd(CommandMode.CHARGE, 1000, lease_s=10), T0)
    assert execute(p, cmd(CommandMode.CHARGE, 1000, lease_s=10), T0 + 8 * H) is Verdict.SKIP
    assert not [a for a in p.tick(T0 + 15 * H) if a.kind is ActionKind.HANDBACK]
    assert [a.kind for a in p.tick(T0 + 18 * H)] == [ActionKind.HANDBACK]
    assert p.budget.used == 1


def test_a_missed_heartbeat_means_the_next_command_is_written_again() -> None:
    p = policy(heartbeat_s=1)
    execute(p, cmd(CommandMode.CHARGE, 1000), T0)
    p.heartbeat_sent(T0 + H, ok=False)
    assert p.decide(cmd(CommandMode.CHARGE, 1000), T0 + 2 * H, None).verdict is Verdict.EXECUTE


def test_verification_succeeds_on_a_later_poll_or_times_out() -> None:
    p = policy(verify_s=10)
    p.observe(state(T0 - H, battery_w=0))
    execute(p, cmd(CommandMode.CHARGE, 2000, id="v"), T0)
    assert p.verification is not None and p.verification.target_w == -2000
    assert p.observe(state(T0 - H, battery_w=-2000)) is None  # read before the write: says nothing
    assert p.observe(state(T0 + H, battery_w=-300)) is None
    done = p.observe(state(T0 + 2 * H, battery_w=-1100))  # more than half-way
    assert done is not None and done.command_id == "v"
    ack = p.verified_ack(done, True, -1100, T0 + 2 * H)
    assert ack is not None and ack.verified is True and ack.applied_power_w == -2000

    execute(p, cmd(CommandMode.DISCHARGE, 1500, id="w"), T0 + 3 * H)
    p.observe(state(T0 + 4 * H, battery_w=-1000))
    actions = [a for a in p.tick(T0 + 14 * H) if a.kind is not ActionKind.HEARTBEAT]
    assert [a.kind for a in actions] == [ActionKind.VERIFY_TIMEOUT]
    assert p.verification is None
    late = p.verified_ack(actions[0].verification, False, -1000, T0 + 14 * H)  # type: ignore[arg-type]
    assert late is not None and late.verified is False and "not reached" in (late.reason or "")


def test_grid_target_is_verified_on_grid_power() -> None:
    v = Verification("g", "grid_power_w", 500.0, 2000.0, T0, T0 + 30 * H)
    assert v.observe(state(T0 + H, battery_w=0, grid_w=1600)) is None
    assert v.observe(state(T0 + H, battery_w=0, grid_w=580)) is True


commands = st.builds(
    lambda mode, power, target, lease: cmd(mode, power, grid_target_w=target, lease_s=lease),
    modes,
    st.floats(0, 6000),
    st.floats(-12_000, 12_000),
    st.floats(1, 600),
)


@settings(max_examples=150)
@given(steps=st.lists(st.tuples(commands, st.floats(0, 3600), st.booleans()), max_size=40),
       budget=st.integers(1, 8), replay=st.booleans())  # fmt: skip
def test_budget_is_never_exceeded_and_no_id_executes_twice(
    steps: list[tuple[InverterCommand, float, bool]], budget: int, replay: bool
) -> None:
    p = policy(budget=budget)
    now = T0
    executed: list[str] = []
    for command, dt, accepted in steps:
        now += timedelta(seconds=dt)
        for action in p.tick(now):
            if action.kind is ActionKind.HANDBACK:
                if p.handback_writes(now):
                    p.will_write(p.handback_setpoint(), now)
                p.handed_back(now)
        for c in (command, command) if replay else (command,):
            d = p.decide(c, now, None)
            if d.verdict is Verdict.EXECUTE:
                executed.append(c.id)
            execute(p, c, now, accepted)
        assert p.budget.used <= budget
    assert len(executed) == len(set(executed))


@pytest.mark.parametrize(
    ("bms", "why"),
    [
        (BmsLimits(3000, 3000, discharge_allowed=False), "BMS forbids discharge"),
        (BmsLimits(3000, 3000, charge_allowed=False), "BMS forbids charge"),
        (BmsLimits(3000, 3000, temp_min_c=20, temp_max_c=60), "above"),
        (BmsLimits(3000, 3000, temp_min_c=-5, temp_max_c=2), "below"),
    ],
)
def test_grid_target_is_refused_when_the_bms_blocks_a_direction(bms: BmsLimits, why: str) -> None:
    """In grid-target mode the inverter picks the direction, so a blocked direction means standby."""
    result = clamp(cmd(CommandMode.GRID_TARGET, grid_target_w=-3000), LIMITS, bms)
    assert result.setpoint.mode is CommandMode.STANDBY and result.clamped
    assert why in result.reasons[0]
    healthy = clamp(cmd(CommandMode.GRID_TARGET, grid_target_w=-3000), LIMITS, BmsLimits(3000, 3000, temp_min_c=20,
                                                                                         temp_max_c=25))
    assert healthy.setpoint.mode is CommandMode.GRID_TARGET
