"""Pure: when the dispatcher sends an ``InverterCommand``, and what the bridge's answers mean.

The controller decides on every meter update; the inverter must not hear about each one. A command
goes out only when

* the wanted setpoint differs from the last one sent (``changed``; the first one is ``start``),
* the last one has run a third of its lease (``renew``: two renewals may be lost before the
  bridge's watchdog hands the inverter back), or
* the controller stopped commanding (``handback``): one ``self_use`` command, then silence, so
  the lease lapses even if that command is lost.

Acks are matched to the commands by id; a ``rejected`` or ``error`` answer becomes an event and a
note in the next decision (``AckLedger``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.messages import AckStatus, CommandAck, CommandMode, InverterCommand

__all__ = ["AckLedger", "AckProblem", "Sent", "build_command", "command_due", "handback_command"]

# Renew when this fraction of the lease has gone.
RENEW_FRACTION = 1 / 3


@dataclass(frozen=True)
class Sent:
    """The last command that went out (what the bridge should be doing now)."""

    command_id: str
    mode: CommandMode
    power_w: float
    at: datetime
    lease_s: float

    @classmethod
    def of(cls, command: InverterCommand) -> Sent:
        return cls(command.id, command.mode, command.power_w, command.ts, command.lease_s)


def command_due(last: Sent | None, wanted: CommandMode | None, battery_w: float, now: datetime) -> str | None:
    """Why a command must go out now (``start``, ``changed``, ``renew``, ``handback``), or None.

    ``wanted`` None means hand control back to the inverter; ``battery_w`` is the signed setpoint
    (discharge +) whose magnitude is the command's power.
    """
    if wanted is None:
        if last is not None and last.mode is not CommandMode.SELF_USE:
            return "handback"
        return None
    if last is None or last.mode is CommandMode.SELF_USE:
        return "start"
    if last.mode is not wanted or abs(last.power_w - abs(battery_w)) > 1e-6:
        return "changed"
    if (now - last.at).total_seconds() >= last.lease_s * RENEW_FRACTION:
        return "renew"
    return None


def build_command(
    mode: CommandMode, battery_w: float, now: datetime, lease_s: float, reason: str | None
) -> InverterCommand:
    """A command whose lease runs ``lease_s`` from now. It expires when its successor is due:
    delivered later than that it would only hold an old setpoint in force."""
    return InverterCommand(
        ts=now,
        mode=mode,
        power_w=abs(battery_w) if mode in (CommandMode.CHARGE, CommandMode.DISCHARGE) else 0.0,
        lease_s=lease_s,
        expires_at=now + timedelta(seconds=lease_s * RENEW_FRACTION),
        source="dispatcher",
        reason=None if reason is None else reason[:200],
    )


def handback_command(now: datetime, lease_s: float, reason: str | None) -> InverterCommand:
    return InverterCommand(
        ts=now,
        mode=CommandMode.SELF_USE,
        lease_s=lease_s,
        expires_at=now + timedelta(seconds=lease_s),
        source="dispatcher",
        reason=None if reason is None else reason[:200],
    )


@dataclass(frozen=True)
class AckProblem:
    command_id: str | None
    status: AckStatus
    reason: str
    mode: CommandMode | None

    def describe(self) -> str:
        what = f"{self.mode.value} command" if self.mode is not None else "command"
        return f"{what} {self.command_id or '?'} {self.status.value} by the bridge: {self.reason}"


class AckLedger:
    """The commands sent and not yet answered, by id (the oldest are forgotten past ``remember``)."""

    def __init__(self, remember: int = 64) -> None:
        self.remember = remember
        self._pending: OrderedDict[str, InverterCommand] = OrderedDict()
        self.accepted = 0
        self.refused = 0

    def sent(self, command: InverterCommand) -> None:
        self._pending[command.id] = command
        while len(self._pending) > self.remember:
            self._pending.popitem(last=False)

    def answer(self, ack: CommandAck) -> AckProblem | None:
        """The problem an ack reports, or None when it is fine or not about our command.

        A verification follow-up (``verified`` False) on an accepted command is a problem too: the
        battery did not move toward the setpoint.
        """
        command = self._pending.get(ack.command_id) if ack.command_id is not None else None
        if command is None and ack.status is AckStatus.ACCEPTED:
            return None
        mode = command.mode if command is not None else None
        if ack.status is AckStatus.ACCEPTED:
            if ack.verified is None:
                self.accepted += 1
                return None
            if ack.verified:
                self._pending.pop(ack.command_id or "", None)
                return None
            return AckProblem(ack.command_id, ack.status, ack.reason or "setpoint not reached", mode)
        if command is None and ack.command_id is not None:
            return None  # someone else's command (a person with the CLI): not ours to report
        self.refused += 1
        self._pending.pop(ack.command_id or "", None)
        return AckProblem(ack.command_id, ack.status, ack.reason or "no reason given", mode)
