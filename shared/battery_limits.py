"""What the BMS allows the battery to do right now, in W: one reading for the inverter bridge
(which clamps every command to it) and the dispatcher (which plans and decides within it), so the
two never disagree about whether the battery may charge."""

from __future__ import annotations

from dataclasses import dataclass

from shared.messages import BatteryState

# Pylontech US2000/US3000 datasheets: charge 0..50 degC, discharge -10..50 degC. The BMS reports
# its own limits too (0x92 currents drop to 0 outside them); these catch a BMS that lags.
CHARGE_TEMP_C = (0.0, 50.0)
DISCHARGE_TEMP_C = (-10.0, 50.0)


def outside_window(temp_min: float | None, temp_max: float | None, window: tuple[float, float]) -> str | None:
    if temp_min is not None and temp_min < window[0]:
        return f"battery at {temp_min:g} degC, below {window[0]:g} degC"
    if temp_max is not None and temp_max > window[1]:
        return f"battery at {temp_max:g} degC, above {window[1]:g} degC"
    return None


@dataclass(frozen=True, slots=True)
class BmsLimits:
    """The BMS's word on what the battery may do now, in W."""

    charge_w: float
    discharge_w: float
    charge_allowed: bool = True
    discharge_allowed: bool = True
    temp_min_c: float | None = None
    temp_max_c: float | None = None

    @classmethod
    def from_state(cls, state: BatteryState) -> BmsLimits:
        lim = state.limits
        return cls(
            charge_w=max(0.0, lim.charge_current_a * state.voltage_v),
            discharge_w=max(0.0, lim.discharge_current_a * state.voltage_v),
            charge_allowed=lim.charge_allowed,
            discharge_allowed=lim.discharge_allowed,
            temp_min_c=state.temp_min_c,
            temp_max_c=state.temp_max_c,
        )

    def blocked(self, charging: bool) -> str | None:
        """Why this direction is not allowed at all right now (flag or temperature), else None."""
        word = "charge" if charging else "discharge"
        if not (self.charge_allowed if charging else self.discharge_allowed):
            return f"BMS forbids {word}"
        outside = outside_window(self.temp_min_c, self.temp_max_c, CHARGE_TEMP_C if charging else DISCHARGE_TEMP_C)
        return None if outside is None else f"{outside}: no {word}"

    def cap_w(self, charging: bool) -> float:
        """Most power the battery may take (``charging``) or give now, in W."""
        if self.blocked(charging) is not None:
            return 0.0
        return self.charge_w if charging else self.discharge_w
