"""An AC-coupled battery inverter in the manner of the Sofar ME3000SP.

Modes:

* **self-use** (the inverter's own mode): read the grid CT and move the battery so the grid reads
  zero: charge from surplus, discharge to cover the house, within its rating and the battery's limits.
* **passive** (remote control, vendor function 0x42): ``standby`` holds 0 W, ``charge``/``discharge``
  hold a power, ``auto`` regulates the grid to a target. Every 0x42 write and every 0x49 heartbeat
  renews the lease; after ``passive_timeout_s`` without either, the inverter returns to self-use.
* **EPS**: when the grid is lost the inverter forms the house's own supply from battery and PV.

The ``auto`` target follows the vendor's sign: ``+`` pushes towards discharge/export, ``-`` towards
charge/import, i.e. the inverter holds grid power (import +) at ``-target``.

Everything here is pure state and arithmetic: the simulated time is passed in, never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


class Control(StrEnum):
    SELF_USE = "self_use"
    PASSIVE = "passive"


class PassiveMode(StrEnum):
    STANDBY = "standby"
    DISCHARGE = "discharge"
    CHARGE = "charge"
    AUTO = "auto"


class RunningState(IntEnum):
    """Register 0x0200 values (vendor PDF)."""

    WAIT = 0
    CHECK_CHARGE = 1
    CHARGING = 2
    CHECK_DISCHARGE = 3
    DISCHARGING = 4
    EPS = 5
    FAULT = 6
    PERMANENT_FAULT = 7


class CommandStatus(IntEnum):
    """Low byte of the 0x42 response."""

    ACCEPTED = 0
    INVALID_MODE = 1
    CRC_FAILED = 2
    BUSY = 3
    INVALID_DATA = 4


@dataclass(frozen=True, slots=True)
class InverterParams:
    rated_w: float = 3000.0
    passive_timeout_s: float = 60.0
    # How fast the output can move (W/s); the ME3000 takes a few seconds to settle.
    ramp_w_per_s: float = 1000.0
    # Below this the inverter idles rather than trickle (W).
    idle_band_w: float = 20.0
    # Self-use leaves the battery where it is while its CT reads the grid within this of zero (W).
    # 0: it corrects every watt. Real units regulate within a tolerance; inside it a grid-CT
    # diverter holding the export at its small margin keeps the battery discharging into the tank.
    self_use_band_w: float = 0.0
    eps_enabled: bool = True
    passive_allowed: bool = True


@dataclass(slots=True)
class Inverter:
    params: InverterParams = field(default_factory=InverterParams)
    control: Control = Control.SELF_USE
    passive_mode: PassiveMode = PassiveMode.STANDBY
    passive_value_w: float = 0.0
    last_contact_s: float = 0.0
    battery_w: float = 0.0
    running: RunningState = RunningState.WAIT
    faulted: bool = False
    commands_accepted: int = 0
    # Every 0x42 write that reached the inverter, accepted or refused: what wears its flash.
    writes_received: int = 0
    timeouts: int = 0

    # remote control ----------------------------------------------------------------------------
    def command(self, mode: PassiveMode, value_w: float, now_s: float) -> CommandStatus:
        """A 0x42 write. ``value_w``: magnitude for charge/discharge, vendor-signed target for auto."""
        if not self.params.passive_allowed:
            return CommandStatus.INVALID_MODE
        if self.faulted:
            return CommandStatus.BUSY
        rated = self.params.rated_w
        if mode in (PassiveMode.CHARGE, PassiveMode.DISCHARGE) and not 0 <= value_w <= rated:
            return CommandStatus.INVALID_DATA
        if mode is PassiveMode.AUTO and not -9999 <= value_w <= 9999:
            return CommandStatus.INVALID_DATA
        self.control = Control.PASSIVE
        self.passive_mode = mode
        self.passive_value_w = 0.0 if mode is PassiveMode.STANDBY else float(value_w)
        self.last_contact_s = now_s
        self.commands_accepted += 1
        return CommandStatus.ACCEPTED

    def heartbeat(self, now_s: float) -> None:
        """A 0x49 heartbeat: keeps the passive lease alive."""
        self.last_contact_s = now_s

    def check_lease(self, now_s: float) -> None:
        if self.control is Control.PASSIVE and now_s - self.last_contact_s > self.params.passive_timeout_s:
            self.control = Control.SELF_USE
            self.timeouts += 1

    # the control step ------------------------------------------------------------------------------
    def setpoint(self, grid_seen_w: float, dt_s: float, max_charge_w: float, max_discharge_w: float) -> float:
        """Battery AC power (discharge +) to run this step.

        ``grid_seen_w`` is the grid power its CT reads *with the previous battery output still
        applied* (import +); it is all the inverter knows about the house.
        """
        if self.faulted:
            return 0.0
        if self.control is Control.SELF_USE:
            within = abs(grid_seen_w) <= self.params.self_use_band_w
            desired = self.battery_w if within else self.battery_w + grid_seen_w
        elif self.passive_mode is PassiveMode.STANDBY:
            desired = 0.0
        elif self.passive_mode is PassiveMode.DISCHARGE:
            desired = self.passive_value_w
        elif self.passive_mode is PassiveMode.CHARGE:
            desired = -self.passive_value_w
        else:
            desired = self.battery_w + grid_seen_w + self.passive_value_w
        if abs(desired) < self.params.idle_band_w:
            desired = 0.0
        rated = self.params.rated_w
        desired = min(max(desired, -min(rated, max_charge_w)), min(rated, max_discharge_w))
        step = self.params.ramp_w_per_s * dt_s
        return min(max(desired, self.battery_w - step), self.battery_w + step)

    def settle(self, actual_w: float, eps: bool) -> None:
        """Record what the battery actually did and the running state it shows on 0x0200."""
        self.battery_w = actual_w
        if self.faulted:
            self.running = RunningState.FAULT
        elif eps:
            self.running = RunningState.EPS
        elif actual_w < -self.params.idle_band_w:
            self.running = RunningState.CHARGING
        elif actual_w > self.params.idle_band_w:
            self.running = RunningState.DISCHARGING
        else:
            self.running = RunningState.WAIT

    def status_bits(self, max_charge_w: float, max_discharge_w: float) -> int:
        """High byte of the 0x42 response: b0 charge enabled, b1 discharge enabled, b2 full, b3 flat."""
        bits = 0
        if max_charge_w > 0:
            bits |= 0x01
        else:
            bits |= 0x04
        if max_discharge_w > 0:
            bits |= 0x02
        else:
            bits |= 0x08
        return bits
