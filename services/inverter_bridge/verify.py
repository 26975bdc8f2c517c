"""Pure: did the inverter do what it was told? After a write, the reported battery power (or the
grid power, for a grid target) must move toward the setpoint within ``verify_s``.

"Toward" means: within ``tolerance_w`` of the target, or at least half-way from where it was when
the write went out. Only polls read after the write count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.messages import InverterState

from .limits import Setpoint

MIN_TOLERANCE_W = 100.0
TOLERANCE_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class Verification:
    command_id: str
    quantity: str  # "battery_power_w" or "grid_power_w"
    target_w: float
    start_w: float | None
    started: datetime
    deadline: datetime

    @property
    def tolerance_w(self) -> float:
        return max(MIN_TOLERANCE_W, TOLERANCE_FRACTION * abs(self.target_w))

    def reached(self, observed_w: float) -> bool:
        error = abs(observed_w - self.target_w)
        if error <= self.tolerance_w:
            return True
        return self.start_w is not None and error <= 0.5 * abs(self.start_w - self.target_w)

    def observe(self, state: InverterState) -> bool | None:
        """True when this poll shows the move; None when it says nothing yet (too early)."""
        if state.ts < self.started:
            return None
        observed = float(getattr(state, self.quantity))
        return True if self.reached(observed) else None

    def expired(self, now: datetime) -> bool:
        return now >= self.deadline

    def details(self, observed_w: float | None) -> dict[str, float | str | None]:
        return {
            "quantity": self.quantity,
            "target_w": self.target_w,
            "start_w": self.start_w,
            "observed_w": observed_w,
            "tolerance_w": self.tolerance_w,
        }


def start_verification(
    command_id: str, setpoint: Setpoint, last: InverterState | None, now: datetime, verify_s: float
) -> Verification | None:
    """What to check after writing ``setpoint``; None for self-use (nothing fixed to check)."""
    if setpoint.battery_power_w is not None:
        quantity, target = "battery_power_w", setpoint.battery_power_w
    elif setpoint.grid_target_w is not None:
        quantity, target = "grid_power_w", setpoint.grid_target_w
    else:
        return None
    start = float(getattr(last, quantity)) if last is not None else None
    return Verification(command_id, quantity, target, start, now, now + timedelta(seconds=verify_s))
