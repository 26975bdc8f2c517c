"""How the dispatcher plans and controls."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import Section

Positive = Annotated[float, Field(gt=0)]


class DispatcherConfig(Section):
    enabled: bool = True
    default_mode: Literal["auto", "self_use", "hold", "off"] = "auto"
    step_minutes: Annotated[int, Field(ge=5, le=60)] = 30
    horizon_hours: Annotated[int, Field(ge=6, le=72)] = 36
    replan_minutes: Annotated[int, Field(ge=1, le=240)] = 30
    replan_forecast_error_pct: Positive = 30.0
    switch_cost_per_change: Annotated[float, Field(ge=0)] = Field(
        0.002,
        description=(
            "Planner penalty (currency) per kW of change in battery power between steps, so a full "
            "1 kW charge-to-discharge flip costs 2x this: the LP form of a cost per mode switch."
        ),
    )
    cycle_cost_per_kwh: Annotated[float, Field(ge=0)] = Field(
        0.005, description="Wear cost per kWh through the battery (half on charge, half on discharge)."
    )
    terminal_value_factor: Annotated[float, Field(ge=0, le=1)] = Field(
        0.9,
        description=(
            "Energy left at the end of the horizon is worth this fraction of the cheapest import price "
            "(times discharge efficiency), so the planner neither dumps nor hoards it at the horizon."
        ),
    )
    import_limit_w: Positive = Field(23_000.0, description="Main fuse: most the house can import.")
    battery_may_export: bool = Field(
        True,
        description=(
            "False when the export tariff pays only for PV (many forbid exporting battery energy): "
            "the planner then never plans battery energy out to the grid, only the PV surplus."
        ),
    )
    top_up_power_w: Positive = Field(1000.0, description="Mains top-up charge power below the floor.")
    battery_priority: Annotated[int, Field(ge=0, le=100)] = Field(
        10, description="The battery's place in the surplus order (loads[].priority: lower goes first)."
    )
    surplus_on_w: Annotated[float, Field(ge=0)] = Field(
        200.0, description="Surplus needed before a flexible load is switched on (hysteresis)."
    )
    deadband_w: Annotated[float, Field(ge=0)] = 100.0
    dwell_s: Annotated[float, Field(ge=0)] = 300.0
    ramp_w_per_s: Positive = 200.0
    quantum_w: Positive = 50.0
    lease_s: Annotated[float, Field(gt=0, le=86_400)] = 120.0
    stale_after_s: Positive = 60.0
    soc_disagreement_pct: Annotated[float, Field(gt=0, le=100)] = Field(
        10.0,
        description="Inverter and BMS SoC further apart than this (percentage points) for "
        "soc_disagreement_s raise a soc_disagreement event (and a soc_disagreement_cleared one when they agree).",
    )
    soc_disagreement_s: Positive = Field(
        300.0, description="How long the inverter's and the BMS's SoC must disagree before it is raised."
    )
    export_limit_w: Annotated[float, Field(ge=0)] | None = None
    top_up_margin_pct: Annotated[float, Field(ge=0, le=50)] = 5.0
    inverter_self_use: bool = Field(
        True,
        description="Hand the inverter its own self-use mode (no setpoint written) whenever the target is to "
        "zero the grid and no flexible load, export limit, reserve, ceiling or top-up needs a setpoint; "
        "false: the dispatcher writes every self-use setpoint itself.",
    )
    pv_forecast: Literal["clear_sky", "external"] = "clear_sky"
    pv_kwp: Annotated[float, Field(ge=0)] = 4.0
    pv_tilt_deg: Annotated[float, Field(ge=0, le=90)] = 30.0
    pv_azimuth_deg: Annotated[float, Field(ge=0, lt=360)] = 180.0
    latitude: Annotated[float, Field(ge=-90, le=90)] = 53.6
    longitude: Annotated[float, Field(ge=-180, le=180)] = -0.5
    default_daily_load_kwh: Positive = 9.0
    inverter: str | None = Field(None, description="Inverter to command; the first one when unset.")
    battery: str | None = Field(None, description="Battery to plan for; the first one when unset.")
    grid_meter: str | None = Field(
        None, description="Grid meter to control on; the inverter's CT when unset."
    )
    state_dir: str = Field(
        "var/state",
        description=(
            "Where the dispatcher keeps its load/PV history, the heat pumps' budgets and when a diverter "
            "was last found (they must survive restarts)."
        ),
    )
    plan_time_limit_s: Annotated[float, Field(gt=0, le=600)] = Field(
        10.0, description="Most wall time one plan may take; the controller keeps the previous plan meanwhile."
    )
