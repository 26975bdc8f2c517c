"""Pure: the inverter bridge's decisions. Command + limits + budget + time -> what to do.

No I/O and no clock: the service asks, performs what it is told, and reports back
(``will_write`` / ``written`` / ``write_failed`` / ``skipped`` / ``handed_back`` / ...). The rules:

* a command id already answered is never executed again (its answer is repeated);
* an expired command is refused;
* a command is clamped (``limits.clamp``) and becomes one passive-mode setpoint, so the inverter
  is never told to charge and discharge at once;
* a setpoint equal to the last one the inverter confirmed is not written again (the lease is
  renewed); any other write needs budget left today, or the command is refused;
* while in passive mode a heartbeat goes out every ``heartbeat_s`` and the lease runs; when it
  lapses the inverter is handed back to self-use (0x42 auto with 0 W, then heartbeats stop so the
  inverter's own passive timeout also returns it to its self-use mode even if that write fails);
* a write is verified against later polls (``verify.Verification``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.messages import AckStatus, CommandAck, InverterCommand, InverterControl, InverterState

from .budget import WriteBudget
from .limits import SELF_USE, BmsLimits, InverterLimits, Setpoint, clamp
from .verify import Verification, start_verification


class Verdict(StrEnum):
    EXECUTE = "execute"
    SKIP = "skip"
    REJECT = "reject"
    REPLAY = "replay"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    command: InverterCommand
    setpoint: Setpoint | None = None
    clamped: bool = False
    reason: str | None = None
    previous: CommandAck | None = None
    budget_refusal: bool = False


class ActionKind(StrEnum):
    HANDBACK = "handback"
    HEARTBEAT = "heartbeat"
    VERIFY_TIMEOUT = "verify_timeout"


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    verification: Verification | None = None


def _join(*parts: str | None) -> str | None:
    text = "; ".join(p for p in parts if p)
    return text or None


class CommandPolicy:
    def __init__(
        self,
        device: str,
        limits: InverterLimits,
        budget: WriteBudget,
        *,
        heartbeat_s: float,
        verify_s: float,
        remember: int = 1024,
    ) -> None:
        self.device = device
        self.limits = limits
        self.budget = budget
        self.heartbeat_s = heartbeat_s
        self.verify_s = verify_s
        self.remember = remember
        # After a (re)start the bridge does not know what the inverter is doing: if it was left in
        # passive mode, it returns to self-use on its own once heartbeats stop.
        self.control = InverterControl.UNKNOWN
        self.confirmed: Setpoint | None = None
        self.lease_until: datetime | None = None
        self.next_heartbeat: datetime | None = None
        self.verification: Verification | None = None
        self.last_state: InverterState | None = None
        self._answers: OrderedDict[str, CommandAck] = OrderedDict()

    # ------------------------------------------------------------------------------ commands

    def decide(
        self, command: InverterCommand, now: datetime, bms: BmsLimits | None, *, bms_expected: bool = False
    ) -> Decision:
        """``bms_expected``: a battery is configured but no fresh ``BatteryState`` is at hand."""
        previous = self._answers.get(command.id)
        if previous is not None:
            return Decision(Verdict.REPLAY, command, previous=previous, reason="already handled; not executed again")
        if command.expired(now):
            assert command.expires_at is not None
            late = (now - command.expires_at).total_seconds()
            return Decision(
                Verdict.REJECT, command, reason=f"expired at {command.expires_at.isoformat()} ({late:.1f} s ago)"
            )
        result = clamp(command, self.limits, bms)
        setpoint, clamp_reason = result.setpoint, _join(*result.reasons)
        bms_note = (
            "no fresh BMS limits: inverter limits only"
            if bms is None and bms_expected and setpoint.battery_power_w not in (None, 0.0)
            else None
        )
        if not setpoint.passive:
            if self.control is InverterControl.SELF_USE:
                return Decision(Verdict.SKIP, command, setpoint, reason="already in self-use: nothing written")
            if self.control is InverterControl.UNKNOWN:
                return Decision(
                    Verdict.SKIP,
                    command,
                    setpoint,
                    reason="no heartbeats are sent: the inverter returns to self-use on its own passive timeout",
                )
            if not self.budget.allows(now.date()):
                return Decision(
                    Verdict.SKIP,
                    command,
                    setpoint,
                    reason="write budget exhausted: heartbeats stopped, the inverter returns to self-use "
                    "on its own passive timeout",
                )
            return Decision(Verdict.EXECUTE, command, setpoint)
        if self.control is InverterControl.PASSIVE and self._same_write(setpoint):
            return Decision(
                Verdict.SKIP,
                command,
                setpoint,
                result.clamped,
                _join(clamp_reason, f"{setpoint.describe()} already set: nothing written, lease renewed", bms_note),
            )
        if not self.budget.allows(now.date()):
            return Decision(
                Verdict.REJECT,
                command,
                setpoint,
                result.clamped,
                f"write budget exhausted: {self.budget.used}/{self.budget.budget_per_day} register writes today",
                budget_refusal=True,
            )
        return Decision(Verdict.EXECUTE, command, setpoint, result.clamped, _join(clamp_reason, bms_note))

    def _same_write(self, setpoint: Setpoint) -> bool:
        c = self.confirmed
        return c is not None and (c.field, c.value) == (setpoint.field, setpoint.value)

    def will_write(self, setpoint: Setpoint, now: datetime) -> None:
        """Count a write before it goes on the wire: the flash cell may change either way."""
        self.budget.record_write(setpoint.field, now.date())

    def written(self, decision: Decision, now: datetime, accepted: bool) -> Verification | None:
        """The inverter answered the write (``accepted`` per its status byte)."""
        setpoint = decision.setpoint
        assert setpoint is not None
        if not accepted:
            # It refused (e.g. not in a mode that takes passive commands): what it does now is unknown.
            self.confirmed = None
            return None
        if not setpoint.passive:
            self._release()
            self.control = InverterControl.SELF_USE
            return None
        self.confirmed = setpoint
        self.control = InverterControl.PASSIVE
        self.lease_until = now + timedelta(seconds=decision.command.lease_s)
        self.next_heartbeat = now + timedelta(seconds=self.heartbeat_s)
        self.verification = start_verification(decision.command.id, setpoint, self.last_state, now, self.verify_s)
        return self.verification

    def write_failed(self, decision: Decision, now: datetime) -> None:
        """No answer: the write may or may not have landed, so nothing is assumed confirmed."""
        self.confirmed = None

    def skipped(self, decision: Decision, now: datetime) -> None:
        assert decision.setpoint is not None
        self.budget.record_skip(now.date())
        if decision.setpoint.passive:
            self.lease_until = now + timedelta(seconds=decision.command.lease_s)
        else:
            self._release()
            self.control = InverterControl.SELF_USE

    def rejected(self, decision: Decision, now: datetime) -> None:
        if decision.budget_refusal:
            self.budget.record_refusal(now.date())

    def ack(
        self,
        decision: Decision,
        now: datetime,
        status: AckStatus,
        reason: str | None = None,
        *,
        verified: bool | None = None,
    ) -> CommandAck:
        """The answer to a command, remembered so that a replay gets the same answer."""
        sp = decision.setpoint
        ack = CommandAck(
            ts=now,
            command_id=decision.command.id,
            device=self.device,
            status=status,
            reason=_join(decision.reason, reason),
            applied_mode=sp.mode if sp is not None and status is AckStatus.ACCEPTED else None,
            applied_power_w=sp.battery_power_w if sp is not None and status is AckStatus.ACCEPTED else None,
            clamped=decision.clamped,
            verified=verified,
        )
        self._answers[decision.command.id] = ack
        self._answers.move_to_end(decision.command.id)
        while len(self._answers) > self.remember:
            self._answers.popitem(last=False)
        return ack

    def verified_ack(
        self, verification: Verification, ok: bool, observed_w: float | None, now: datetime
    ) -> CommandAck | None:
        """The follow-up answer for a verified (or not) write; None if the command was forgotten."""
        first = self._answers.get(verification.command_id)
        if first is None:
            return None
        seen = "nothing" if observed_w is None else f"{observed_w:.0f} W"
        outcome = "reached" if ok else f"not reached within {self.verify_s:g} s"
        note = f"{verification.quantity} {seen}, target {verification.target_w:.0f} W {outcome}"
        ack = first.model_copy(update={"ts": now, "verified": ok, "reason": _join(first.reason, note)})
        self._answers[verification.command_id] = ack
        return ack

    def replay_ack(self, decision: Decision, now: datetime) -> CommandAck:
        prev = decision.previous
        assert prev is not None
        return prev.model_copy(update={"ts": now, "reason": _join(decision.reason, prev.reason)})

    # ------------------------------------------------------------------------------ time

    def tick(self, now: datetime) -> list[Action]:
        actions: list[Action] = []
        if self.control is InverterControl.PASSIVE:
            if self.lease_until is not None and now >= self.lease_until:
                actions.append(Action(ActionKind.HANDBACK))
            elif self.next_heartbeat is not None and now >= self.next_heartbeat:
                actions.append(Action(ActionKind.HEARTBEAT))
        if self.verification is not None and self.verification.expired(now):
            actions.append(Action(ActionKind.VERIFY_TIMEOUT, self.verification))
            self.verification = None
        return actions

    def handback_writes(self, now: datetime) -> bool:
        """Whether the hand-back may write 0x42 auto 0 (budget left); if not, stopping the
        heartbeats alone returns the inverter to self-use on its passive timeout."""
        return self.budget.allows(now.date())

    def handback_setpoint(self) -> Setpoint:
        return SELF_USE

    def handed_back(self, now: datetime) -> None:
        self._release()
        self.control = InverterControl.SELF_USE

    def heartbeat_sent(self, now: datetime, ok: bool) -> None:
        self.next_heartbeat = now + timedelta(seconds=self.heartbeat_s)
        if not ok:
            # A missed heartbeat may let the inverter leave passive mode by itself: the next
            # command must be written again rather than skipped as already set.
            self.confirmed = None

    def _release(self) -> None:
        self.confirmed = None
        self.lease_until = None
        self.next_heartbeat = None
        self.verification = None

    # ------------------------------------------------------------------------------ polls

    def observe(self, state: InverterState) -> Verification | None:
        """A new poll. Returns the verification it completed, if any."""
        self.last_state = state
        pending = self.verification
        if pending is not None and pending.observe(state):
            self.verification = None
            return pending
        return None
