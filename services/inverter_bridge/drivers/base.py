"""What the inverter bridge needs from an inverter it controls, whatever its vendor.

Three things: hold the battery at a setpoint (charge, discharge, standby, or a grid target the
inverter regulates itself), hand the inverter back to its own self-use mode, and keep remote
control alive with a heartbeat. How that becomes traffic on the wire is the driver's business;
the bridge's decisions (limits, budget, lease, verification) never see a register or a function
code, and the link under the driver only reads and writes.

A call that changes a setting puts exactly one write on the wire (the bridge counts it against the
day's budget before the call): a driver never repeats one by itself, since after a timeout nobody
knows whether the inverter executed it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..limits import Setpoint


class DriverProblem(ValueError):
    """An inverter (register map) a driver cannot control; the message says why."""


@dataclass(frozen=True, slots=True)
class ControlResult:
    """The inverter's answer to a write: taken or refused, and its own words for a refusal."""

    accepted: bool
    reason: str | None = None


class InverterDriver(ABC):
    """Remote control of one inverter. Link failures raise ``shared.modbus.LinkError``."""

    @abstractmethod
    async def set_battery(self, setpoint: Setpoint) -> ControlResult:
        """Hold the battery at ``setpoint`` (a passive one: charge, discharge, standby, grid target)."""

    @abstractmethod
    async def self_use(self) -> ControlResult:
        """Hand the inverter back to its own self-use mode: it follows its own grid CT."""

    @abstractmethod
    async def heartbeat(self) -> None:
        """Keep remote control alive; not a write to a setting (not counted)."""
