"""A frozen view of the latest states: what one controller call sees, and nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared.battery_limits import BmsLimits
from shared.messages import BatteryState, DispatcherMode, DispatcherModeName, InverterState, MeterState

__all__ = ["SET_BY_DISPATCHER", "LoadReading", "ModeState", "Snapshot"]

# ``DispatcherMode.set_by`` of the modes the dispatcher sets itself (at start, when a timed mode ran
# out, when a target was reached); any other mode was asked for by a person (mode/set, Home
# Assistant's select, Node-RED).
SET_BY_DISPATCHER = frozenset({"default", "expired", "finished"})


@dataclass(frozen=True)
class ModeState:
    """The mode in force. ``requested_at``: when a person asked for it (None: the dispatcher's own)."""

    mode: DispatcherModeName = DispatcherModeName.AUTO
    until: datetime | None = None
    target_soc_pct: float | None = None
    power_w: float | None = None
    requested_at: datetime | None = None

    @classmethod
    def from_message(cls, message: DispatcherMode) -> ModeState:
        by_person = message.set_by not in SET_BY_DISPATCHER
        return cls(
            message.mode,
            message.until,
            message.target_soc_pct,
            message.power_w,
            requested_at=message.ts if by_person else None,
        )


@dataclass(frozen=True)
class LoadReading:
    """A flexible load's own CT: consumption ``+`` in W."""

    id: str
    power_w: float


@dataclass(frozen=True)
class Snapshot:
    """Latest states. ``*_at`` are the read times of the inputs (None: never received).

    ``grid_w``: import ``+``. ``battery_w``: discharge ``+``. BMS limits are AC-side W (current
    limit times pack voltage); None means the BMS gives none. ``grid_uncertainty_w``: the grid
    meter's error bound when its reading is below the meter's accurate range (None: within it, or
    the meter does not say).
    """

    now: datetime
    soc_pct: float
    battery_w: float
    grid_w: float
    pv_w: float | None = None
    charge_limit_w: float | None = None
    discharge_limit_w: float | None = None
    mode: ModeState = ModeState()
    loads: tuple[LoadReading, ...] = ()
    inverter_at: datetime | None = None
    meter_at: datetime | None = None
    bms_at: datetime | None = None
    grid_uncertainty_w: float | None = None
    # Whose SoC ``soc_pct`` is: "bms" or "inverter" (the dispatcher says so in its decisions).
    soc_source: Literal["bms", "inverter"] = "inverter"

    @classmethod
    def from_messages(
        cls,
        now: datetime,
        inverter: InverterState,
        *,
        grid_meter: MeterState | None = None,
        battery: BatteryState | None = None,
        load_meters: Mapping[str, MeterState] | None = None,
        mode: DispatcherMode | None = None,
    ) -> Snapshot:
        """From the bus's latest messages. Without a grid meter, the inverter's own CT is used;
        with a BMS, its SoC and its charge/discharge limits win over the inverter's."""
        charge_limit = discharge_limit = None
        soc = inverter.battery_soc_pct
        if battery is not None:
            soc = battery.soc_pct
            # The same reading of the BMS the inverter bridge clamps commands with.
            limits = BmsLimits.from_state(battery)
            charge_limit, discharge_limit = limits.cap_w(charging=True), limits.cap_w(charging=False)
        return cls(
            now=now,
            soc_pct=soc,
            battery_w=inverter.battery_power_w,
            grid_w=grid_meter.power_w if grid_meter is not None else inverter.grid_power_w,
            pv_w=inverter.pv_power_w,
            charge_limit_w=charge_limit,
            discharge_limit_w=discharge_limit,
            mode=ModeState.from_message(mode) if mode is not None else ModeState(),
            loads=tuple(LoadReading(name, m.power_w) for name, m in sorted((load_meters or {}).items())),
            inverter_at=inverter.ts,
            meter_at=grid_meter.ts if grid_meter is not None else inverter.ts,
            bms_at=battery.ts if battery is not None else None,
            grid_uncertainty_w=(
                grid_meter.uncertainty_w if grid_meter is not None and grid_meter.below_accurate_range else None
            ),
            soc_source="bms" if battery is not None else "inverter",
        )
