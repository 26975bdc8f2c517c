"""Flexible loads the dispatcher arbitrates."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from shared.messages import Name

from .base import Section
from .tariff import _hhmm


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
    detect_without_ct: bool = Field(
        True,
        description=(
            "With meter null: spot a CT-driven diverter the battery feeds from the grid and inverter "
            "readings (probing the discharge) and cap the discharge at what the house needs."
        ),
    )
    probe_w: Annotated[float, Field(gt=0, le=3000)] = Field(
        300.0, description="Without a CT: how far a probe steps the discharge down (W)."
    )
    grid_band_w: Annotated[float, Field(ge=0, le=1000)] = Field(
        150.0, description="Without a CT: grid readings within this of zero count as held there by the diverter (W)."
    )


class RunWindow(Section):
    """A daily window in local time (``tariff.timezone``); ``end`` before ``start`` crosses midnight."""

    start: str = Field(description="HH:MM, local time.")
    end: str = Field(description="HH:MM, local time; before start: the window crosses midnight.")

    _check = field_validator("start", "end")(classmethod(lambda cls, v: _hhmm(v)))

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.start == self.end:
            raise ValueError(f"run_window start and end are both {self.start!r}: the window would be empty")
        return self


class HeatPumpLoad(_Load):
    kind: Literal["heat_pump"]
    battery_budget_kwh: Annotated[float, Field(ge=0)] = Field(
        1.8, description="Battery energy the heat pump may use per budget period."
    )
    budget_period_hours: Annotated[float, Field(gt=0, le=168)] = Field(
        24.0, description="Periods start at the run window's start (local midnight without a window)."
    )
    min_soc_pct: Annotated[float, Field(ge=0, le=100)] = Field(
        25.0, description="The battery stops feeding the heat pump at this SoC (and never below the reserve)."
    )
    run_window: RunWindow | None = Field(
        None,
        description="Run it from the battery inside this window while budget and SoC last "
        "(e.g. {start: '18:00', end: '07:00'}); outside it, and without one, only on solar surplus.",
    )
    after_budget: Literal["off", "grid"] = Field(
        "off",
        description="In the window, once the budget or the SoC floor is reached (or while the plan holds "
        "the battery): 'off' switches it off, 'grid' leaves it on with the battery holding while it draws "
        "from the grid. A bare YAML off (read as false) means 'off'.",
    )

    @field_validator("after_budget", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        # YAML 1.1 (PyYAML) reads a bare ``off`` as the boolean false: that is what was written.
        return "off" if value is False else value


class EvLoad(_Load):
    kind: Literal["ev"]
    battery_may_feed: bool = False
    min_power_w: Annotated[float, Field(ge=0)] = 1400.0


LoadConfig = Annotated[DiverterLoad | HeatPumpLoad | EvLoad, Field(discriminator="kind")]
