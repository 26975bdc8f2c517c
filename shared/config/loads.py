"""Flexible loads the dispatcher arbitrates."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shared.messages import Name

from .base import Section


class _Load(Section):
    id: Name
    priority: Annotated[int, Field(ge=0, le=100)] = Field(
        50, description="Surplus goes to lower numbers first; the battery is priority 10."
    )
    meter: Name | None = Field(None, description="The load's own CT meter id.")
    switch_topic: str | None = Field(None, description="Topic to publish on/off to (e.g. a Tasmota relay).")
    payload_on: str = "ON"
    payload_off: str = "OFF"
    rated_power_w: Annotated[float, Field(gt=0)] = 3000.0


class DiverterLoad(_Load):
    kind: Literal["diverter"]
    battery_may_feed: bool = Field(False, description="Let the battery drain into the diverter.")


class HeatPumpLoad(_Load):
    kind: Literal["heat_pump"]
    battery_budget_kwh: Annotated[float, Field(ge=0)] = 1.8
    budget_period_hours: Annotated[float, Field(gt=0, le=168)] = 24.0
    min_soc_pct: Annotated[float, Field(ge=0, le=100)] = 25.0


class EvLoad(_Load):
    kind: Literal["ev"]
    battery_may_feed: bool = False
    min_power_w: Annotated[float, Field(ge=0)] = 1400.0


LoadConfig = Annotated[DiverterLoad | HeatPumpLoad | EvLoad, Field(discriminator="kind")]
