"""Inverters, meters and batteries the bridges talk to."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from shared.messages import MeterRole, Name

from .base import Section
from .transports import Transport

Pct = Annotated[float, Field(ge=0, le=100)]
Efficiency = Annotated[float, Field(gt=0, le=1)]


class InverterConfig(Section):
    id: Name
    model: str = Field("sofar_me3000sp", description="Register map name (shared/registers/maps).")
    transport: Transport
    poll_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    max_charge_w: Annotated[float, Field(gt=0)] = 3000.0
    max_discharge_w: Annotated[float, Field(gt=0)] = 3000.0
    quantum_w: Annotated[float, Field(gt=0)] = Field(50.0, description="Setpoints are rounded to this step.")
    write_budget_per_day: Annotated[int, Field(ge=1)] = Field(
        1000, description="Most register writes a day before commands are refused (flash wear)."
    )
    heartbeat_s: Annotated[float, Field(gt=0, le=60)] = 9.0
    verify_s: Annotated[float, Field(gt=0, le=86_400)] = Field(
        30.0, description="Time the battery power has to move toward a new setpoint."
    )
    battery: Name | None = Field(None, description="Battery whose BMS limits clamp this inverter's commands.")
    state_dir: str = Field(
        "var/state", description="Where the bridge keeps its write counters (they must survive restarts)."
    )


class MeterConfig(Section):
    id: Name
    model: Literal["eastron_sdm120", "eastron_sdm630"] | str
    role: MeterRole
    transport: Transport
    poll_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    invert: bool = Field(False, description="The CT clamp is on backwards: flip the sign.")


class BatteryConfig(Section):
    id: Name
    model: str = "pylontech_rs485"
    transport: Transport | None = Field(
        None,
        description=(
            "The BMS's own data link (Pylontech RS485), read by the bms-bridge. Leave it out for a battery "
            "that talks to the inverter only (CAN): then there is no bms-bridge for it, and the dispatcher "
            "uses the inverter's SoC and the limits configured here."
        ),
    )
    modules: Annotated[int, Field(ge=1, le=16)] = 1
    first_address: Annotated[int, Field(ge=1, le=254)] = 2
    usable_kwh: Annotated[float, Field(gt=0)]
    nominal_kwh: Annotated[float, Field(gt=0)] | None = None
    max_charge_w: Annotated[float, Field(gt=0)] = 3000.0
    max_discharge_w: Annotated[float, Field(gt=0)] = 3000.0
    charge_efficiency: Efficiency = 0.95
    discharge_efficiency: Efficiency = 0.95
    min_soc_pct: Pct = 10.0
    reserve_soc_pct: Pct = 20.0
    max_soc_pct: Pct = 100.0
    poll_s: Annotated[float, Field(gt=0, le=3600)] = 10.0

    @property
    def has_bms_link(self) -> bool:
        """The bms-bridge reads this battery's BMS (else: CAN to the inverter only)."""
        return self.transport is not None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min_soc_pct <= self.reserve_soc_pct <= self.max_soc_pct:
            raise ValueError(
                "need min_soc_pct <= reserve_soc_pct <= max_soc_pct, got "
                f"{self.min_soc_pct} / {self.reserve_soc_pct} / {self.max_soc_pct}"
            )
        return self
