"""The topic contract: one frozen pydantic model per payload.

Sign convention, everywhere: power flowing *into the house's AC bus* is positive.

* grid: import ``+``, export ``-``
* battery: discharge ``+``, charge ``-``
* PV: generation ``+``
* load (and every consuming load: heat pump, immersion, EV): consumption ``+``

so that at every instant ``load_w = pv_w + grid_w + battery_w``.

Every payload carries ``v`` (the schema version of that model) and ``ts`` (ISO-8601 UTC, the time
the value was *read* from the device, not when the message was sent). A breaking change to a
model bumps its ``SCHEMA_VERSION`` and says how to migrate in docs/topics.md.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from shared import clock


def utc_now() -> datetime:
    """Now, by the process clock: wall time live, simulated time against the simulator."""
    return clock.now()


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _iso_z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# A timestamp must carry an offset (naive times are refused: their zone is a guess) and is stored
# and written in UTC with a trailing ``Z``.
UtcDatetime = Annotated[AwareDatetime, PlainSerializer(_iso_z, return_type=str, when_used="json")]

Watts = Annotated[float, Field(allow_inf_nan=False)]
Pct = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Message(BaseModel):
    """Base of every payload: frozen, unknown fields refused, versioned, timestamped."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    SCHEMA_VERSION: ClassVar[int] = 1
    # QoS and retain are properties of the payload kind, so the bus never has to guess.
    QOS: ClassVar[int] = 0
    RETAIN: ClassVar[bool] = False

    v: int = Field(1, description="Schema version of this payload.", examples=[1])
    ts: UtcDatetime = Field(description="ISO-8601 UTC time the value was read.", examples=["2026-01-15T12:00:00.000Z"])

    @field_validator("ts", mode="after")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _as_utc(value)

    @model_validator(mode="after")
    def _version(self) -> Message:
        if self.v != self.SCHEMA_VERSION:
            raise ValueError(
                f"v={self.v} is not supported by {type(self).__name__} "
                f"(this service speaks version {self.SCHEMA_VERSION})"
            )
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class RunningState(StrEnum):
    WAIT = "wait"
    CHECK_CHARGE = "check_charge"
    CHARGING = "charging"
    CHECK_DISCHARGE = "check_discharge"
    DISCHARGING = "discharging"
    EPS = "eps"
    FAULT = "fault"
    PERMANENT_FAULT = "permanent_fault"
    UNKNOWN = "unknown"


class InverterControl(StrEnum):
    """Who is steering the inverter right now, as the bridge knows it."""

    SELF_USE = "self_use"
    PASSIVE = "passive"
    UNKNOWN = "unknown"


class InverterState(Message):
    """One poll of a battery inverter. Powers follow the AC-bus sign convention.

    ``battery_power_w``: discharge ``+``, charge ``-``. ``grid_power_w``: import ``+``, export ``-``.
    Energy counters are what the inverter reports; they reset at the inverter's own midnight.
    """

    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = True

    device: Name
    model: str = Field(description="Register map the values were decoded with.", examples=["sofar_me3000sp"])
    running_state: RunningState
    control: InverterControl = InverterControl.UNKNOWN
    battery_power_w: Watts = Field(description="Battery power, discharge + / charge -.", examples=[-1200.0])
    battery_soc_pct: Pct
    battery_voltage_v: Finite
    battery_current_a: Finite | None = Field(None, description="Battery current, discharge + / charge -.")
    battery_temp_c: Finite
    battery_cycles: int | None = None
    grid_power_w: Watts = Field(description="Grid power at the inverter's CT, import + / export -.")
    grid_voltage_v: Finite
    grid_current_a: Finite | None = None
    grid_frequency_hz: Finite
    load_power_w: Watts = Field(description="House consumption as the inverter computes it, +.")
    pv_power_w: Watts = Field(description="PV generation seen by the inverter's PV CT, +.")
    inverter_power_w: Watts | None = Field(None, description="AC power of the inverter itself, out of it +.")
    eps_power_w: Watts | None = None
    inverter_temp_c: Finite | None = None
    heatsink_temp_c: Finite | None = None
    pv_energy_today_wh: Finite
    export_energy_today_wh: Finite
    import_energy_today_wh: Finite
    load_energy_today_wh: Finite
    pv_energy_total_wh: Finite
    export_energy_total_wh: Finite
    import_energy_total_wh: Finite
    load_energy_total_wh: Finite
    faults: tuple[str, ...] = Field((), description="Active fault and alarm names.")


class CommandMode(StrEnum):
    AUTO = "auto"  # the inverter's own self-use mode, a synonym kept for users of 'auto'
    SELF_USE = "self_use"
    CHARGE = "charge"
    DISCHARGE = "discharge"
    STANDBY = "standby"
    GRID_TARGET = "grid_target"


class InverterCommand(Message):
    """A request to the inverter bridge. QoS 1, never retained, answered on ``ack``.

    ``power_w`` is a magnitude for ``charge`` and ``discharge``. ``grid_target_w`` follows the grid
    sign (import +) and is used by ``grid_target``. ``lease_s`` is the watchdog: if no renewal
    arrives in time, the bridge hands the inverter back to its own self-use mode.
    """

    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = False

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=64)
    mode: CommandMode
    power_w: Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False)] = 0.0
    grid_target_w: Annotated[float, Field(ge=-100_000, le=100_000, allow_inf_nan=False)] = 0.0
    lease_s: Annotated[float, Field(gt=0, le=86_400)] = 120.0
    expires_at: UtcDatetime | None = Field(None, description="After this time the command is void.")
    source: str = Field("dispatcher", max_length=64)
    reason: str | None = Field(None, max_length=200)

    @field_validator("expires_at", mode="after")
    @classmethod
    def _utc_expiry(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _as_utc(value)

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    @property
    def battery_power_w(self) -> float | None:
        """The battery setpoint in the AC-bus convention, when the mode fixes one."""
        if self.mode is CommandMode.CHARGE:
            return -self.power_w
        if self.mode is CommandMode.DISCHARGE:
            return self.power_w
        if self.mode is CommandMode.STANDBY:
            return 0.0
        return None


class AckStatus(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ERROR = "error"


class CommandAck(Message):
    """The answer to one command (or to a payload that could not be read as one)."""

    QOS: ClassVar[int] = 1

    command_id: str | None = Field(None, description="id of the command, when it could be read.")
    device: Name
    status: AckStatus
    reason: str | None = Field(None, description="Why, when not accepted or when clamped.")
    applied_mode: CommandMode | None = None
    applied_power_w: Finite | None = Field(None, description="Battery setpoint written, AC-bus sign.")
    clamped: bool = False
    verified: bool | None = Field(None, description="Battery power moved toward the setpoint in time.")


class CellState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    voltage_v: Finite | None = Field(description="null when the BMS sent a value no cell can have.")
    temp_c: Finite | None = None


class ModuleState(BaseModel):
    """One battery module (a Pylontech US2000/US3000 in a stack)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    index: int = Field(ge=0)
    voltage_v: Finite | None = Field(description="null when the BMS sent a value no module can have.")
    current_a: Finite | None = Field(description="Module current, discharge + / charge -; null when implausible.")
    soc_pct: Pct | None = Field(description="null when the capacities the BMS sent are implausible.")
    remaining_ah: Finite | None = None
    full_ah: Finite | None = None
    cycles: int | None = None
    temps_c: tuple[Finite | None, ...] = Field((), description="BMS board first, then cells; null if implausible.")
    cells: tuple[CellState, ...] = ()
    cell_spread_mv: Finite | None = None
    alarms: tuple[str, ...] = ()


class BatteryLimits(BaseModel):
    """What the BMS allows right now (Pylontech 0x92)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    charge_voltage_v: Finite | None = None
    discharge_voltage_v: Finite | None = None
    charge_current_a: Finite = Field(ge=0)
    discharge_current_a: Finite = Field(ge=0)
    charge_allowed: bool = True
    discharge_allowed: bool = True
    force_charge: bool = False


class BatteryState(Message):
    """A battery stack as its BMS reports it. Current and power: discharge ``+``, charge ``-``.

    A value the BMS sent that no battery can have is published as ``null`` and named in
    ``quality_flags``; the rest is published (vendors differ, DESIGN.md "Safety and failure").
    """

    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = True
    # v2: fields a BMS sent implausibly are null and named in quality_flags (docs/topics.md).
    SCHEMA_VERSION: ClassVar[int] = 2

    v: int = Field(2, description="Schema version of this payload.", examples=[2])
    device: Name
    model: str = "pylontech_rs485"
    voltage_v: Finite
    current_a: Finite | None = Field(description="Stack current, discharge + / charge -; null if any module's is null.")
    power_w: Watts | None = Field(description="Stack power, discharge + / charge -; null when current_a is.")
    soc_pct: Pct
    soh_pct: Pct | None = None
    temp_min_c: Finite | None = None
    temp_max_c: Finite | None = None
    cycles: int | None = None
    cell_min_v: Finite | None = None
    cell_max_v: Finite | None = None
    cell_spread_mv: Finite | None = None
    limits: BatteryLimits
    modules: tuple[ModuleState, ...] = ()
    alarms: tuple[str, ...] = ()
    quality_flags: tuple[str, ...] = Field(
        (),
        description="Fields dropped because the BMS sent a value no battery can have, as module<i>.<field>.",
        examples=[["module1.discharge_current_limit_a"]],
    )


class MeterRole(StrEnum):
    GRID = "grid"
    PV = "pv"
    LOAD = "load"
    HEAT_PUMP = "heat_pump"
    IMMERSION = "immersion"
    EV = "ev"
    BATTERY = "battery"


class MeterState(Message):
    """One CT/energy meter reading, signed for its role in the AC-bus convention.

    grid: import ``+``; pv: generation ``+``; load, heat_pump, immersion, ev: consumption ``+``;
    battery: discharge ``+``. ``below_accurate_range`` is true when the current is under the
    meter's specified accurate range, where the reading is uncertain (CTs lie at low current).
    """

    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = True

    device: Name
    model: str
    role: MeterRole
    power_w: Watts
    voltage_v: Finite
    current_a: Finite
    frequency_hz: Finite
    power_factor: Finite | None = None
    import_energy_wh: Finite = Field(ge=0)
    export_energy_wh: Finite = Field(ge=0)
    below_accurate_range: bool = False
    uncertainty_w: Finite | None = Field(None, ge=0, description="Meter's error bound at this reading.")


class AvailabilityState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class Availability(Message):
    """Retained. A service's own availability is its last will; a device's is set by its bridge."""

    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = True

    state: AvailabilityState
    reason: str | None = Field(None, max_length=200)


class Intent(StrEnum):
    CHARGE = "charge"
    DISCHARGE = "discharge"
    HOLD = "hold"
    SELF_USE = "self_use"
    OFF = "off"


class Setpoints(BaseModel):
    """What the dispatcher wants the devices to do."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    inverter_mode: CommandMode | None = Field(None, description="None: hand control back to the inverter.")
    battery_power_w: Watts = Field(0.0, description="Battery setpoint, discharge + / charge -.")
    grid_target_w: Watts | None = None
    loads_on: dict[str, bool] = Field(default_factory=dict, description="Flexible loads switched on/off.")


class DispatcherDecision(Message):
    """One decision of the real-time controller with the reason code and the numbers behind it."""

    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = True

    mode: str = Field(description="Dispatcher mode in force (auto, self_use, force_charge, ...).")
    setpoints: Setpoints
    reason: str = Field(description="Reason code, e.g. plan_track, reserve_floor, stale_inputs.")
    detail: str | None = None
    numbers: dict[str, Finite] = Field(default_factory=dict)
    plan_id: str | None = None
    commanding: bool = Field(True, description="False when the dispatcher has handed control back.")
    soc_source: Literal["bms", "inverter"] | None = Field(
        None,
        description="Whose SoC the decision used: the BMS's when one is configured and heard (it wins), "
        "else the inverter's; null when there was no reading. numbers.soc_inverter_pct and "
        "numbers.soc_bms_pct give both.",
    )
    soc_device: str | None = Field(None, description="The device whose SoC the decision used.")


class PlanStep(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    start: UtcDatetime
    import_price_per_kwh: Finite
    export_price_per_kwh: Finite
    pv_forecast_w: Finite
    load_forecast_w: Finite
    battery_power_w: Finite = Field(description="Planned mean battery power, discharge + / charge -.")
    grid_power_w: Finite = Field(description="Planned mean grid power, import + / export -.")
    soc_pct_end: Pct
    intent: Intent


class Plan(Message):
    """The planner's SoC path and per-step intent over its horizon."""

    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = True

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    step_s: int = Field(gt=0)
    soc_pct_start: Pct
    steps: tuple[PlanStep, ...]
    expected_cost: Finite
    solver: str = "lp"
    solve_ms: Finite | None = None
    reason: str = Field("scheduled", description="Why the plan was made: scheduled, forecast_error, ...")


class DispatcherModeName(StrEnum):
    AUTO = "auto"
    SELF_USE = "self_use"
    FORCE_CHARGE = "force_charge"
    FORCE_DISCHARGE = "force_discharge"
    HOLD = "hold"
    OFF = "off"


class ModeRequest(Message):
    """``ongrid/{site}/dispatcher/mode/set``: a person or Node-RED asks for a mode.

    ``v`` and ``ts`` may be left out here (a hand-written ``{"mode": "hold"}`` is fine).
    """

    QOS: ClassVar[int] = 1

    ts: UtcDatetime = Field(default_factory=utc_now, description="When the request was made.")
    mode: DispatcherModeName
    until: UtcDatetime | None = Field(None, description="Mode ends at this time and auto resumes.")
    target_soc_pct: Pct | None = Field(None, description="force_charge/discharge end at this SoC.")
    power_w: Annotated[float, Field(ge=0, le=100_000)] | None = None

    @field_validator("until", mode="after")
    @classmethod
    def _utc_until(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _as_utc(value)


class DispatcherMode(Message):
    """The mode in force, retained on ``ongrid/{site}/dispatcher/mode/state``."""

    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = True

    mode: DispatcherModeName
    until: UtcDatetime | None = None
    target_soc_pct: Pct | None = None
    power_w: Finite | None = None
    set_by: str = "default"


class DailyStats(Message):
    """One day's figures (``ts`` is the end of the period). Energies are positive magnitudes."""

    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = True

    day: date
    pv_wh: Finite = 0.0
    load_wh: Finite = 0.0
    import_wh: Finite = 0.0
    export_wh: Finite = 0.0
    battery_charge_wh: Finite = 0.0
    battery_discharge_wh: Finite = 0.0
    self_sufficiency_pct: Pct | None = None
    equivalent_cycles: Finite | None = Field(
        None, description="Battery discharge / usable capacity.", json_schema_extra={"unit": "cycles"}
    )
    round_trip_efficiency_pct: Finite | None = None
    reached_sunrise: bool | None = Field(
        None,
        description="The night was made: SoC at first light above discharge_stop_pct by 1 point.",
    )
    soc_at_sunrise_pct: Pct | None = Field(None, description="SoC at first light (the first reading after sunrise).")
    discharge_stop_pct: Pct | None = Field(
        None,
        description="Where the dispatcher stopped discharging that night: the reserve, or the floor in mode off.",
    )
    soc_min_pct: Pct | None = Field(None, description="Lowest SoC of the day.")
    soc_max_pct: Pct | None = Field(None, description="Highest SoC of the day.")
    peak_discharge_wh: Finite | None = Field(
        None,
        description="Energy the battery delivered in the peak window (import price in the upper half of the "
        "day's range); None on a day with one price.",
    )
    export_causes_wh: dict[str, Finite] = Field(
        default_factory=dict,
        description="Why energy was exported, adding up to export_wh: battery_full, flip_flop (the controller "
        "lagged or reversed), forecast_error (surplus the plan's forecast missed, which perfect foresight would "
        "have stored), planned (meant, for money), power_limit (charging as fast as it may).",
    )
    export_by_cause_wh: dict[str, Finite] = Field(
        default_factory=dict,
        description="The first, coarser split, kept for existing readers: battery_full, mode_flip (= flip_flop), "
        "policy (= planned + forecast_error), power_limit.",
    )
    balance_residual_wh: Finite | None = Field(None, description="load - pv - grid - battery, summed.")
    cost: Finite | None = Field(
        None, description="Import cost less export income, tariff currency.", json_schema_extra={"unit": "money"}
    )
    cost_without_battery: Finite | None = Field(
        None, description="The same day with no battery, in the tariff's currency.", json_schema_extra={"unit": "money"}
    )
    savings: Finite | None = Field(
        None, description="cost_without_battery - cost, in the tariff's currency.", json_schema_extra={"unit": "money"}
    )
    samples: int = 0


class EventLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class Event(Message):
    """Something worth telling a person or a log: a rejected payload, a watchdog, a weak module."""

    QOS: ClassVar[int] = 1

    level: EventLevel
    code: str = Field(description="Machine-readable code, e.g. invalid_payload, watchdog_expired.")
    message: str
    device: str | None = None
    topic: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("details", mode="after")
    @classmethod
    def _json_safe(cls, value: dict[str, Any]) -> dict[str, Any]:
        # NaN would make the payload invalid JSON for strict consumers (Node-RED's JSON node).
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in value.items()}


class WriteCounters(Message):
    """Inverter register writes today against the budget (flash wear)."""

    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = True

    device: Name
    day: date
    writes: dict[str, int] = Field(description="Writes today per register name.")
    skipped_noop: int = 0
    refused_budget: int = 0
    budget_per_day: int


class LoadState(Message):
    """A flexible load as the dispatcher switched it."""

    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = True

    load: Name
    kind: Literal["diverter", "heat_pump", "ev"]
    on: bool
    power_w: Watts | None = None
    reason: str | None = None
    battery_budget_left_wh: Finite | None = None


class ForecastPoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    start: UtcDatetime
    # 10 MW: far above any home, low enough that a planner never sees an absurd number.
    power_w: Annotated[float, Field(ge=0, le=10_000_000, allow_inf_nan=False)]


class Forecast(Message):
    """An external forecast (``pv`` or ``load``), e.g. Solcast fed by Node-RED. Mean W per step."""

    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = True

    kind: Literal["pv", "load"]
    step_s: int = Field(1800, gt=0)
    points: tuple[ForecastPoint, ...] = Field(min_length=1)
    source: str | None = None


class RecorderStatus(Message):
    """The recorder's health: what it wrote and what waits in the spool."""

    QOS: ClassVar[int] = 1
    RETAIN: ClassVar[bool] = True

    recorder: Name
    backend: str
    points_written: int = 0
    points_spooled: int = 0
    backlog_points: int = 0
    backlog_bytes: int = 0
    points_lost: int = Field(0, description="Dropped: spool over its bound or memory buffer full (disk full).")
    points_rejected: int = Field(0, description="Refused by the database as malformed; not retried.")
    database_ok: bool = True
    last_error: str | None = None


class SimTruth(Message):
    """Ground truth of the simulated house (tests and benchmarks only), AC-bus convention."""

    QOS: ClassVar[int] = 0
    RETAIN: ClassVar[bool] = True

    sim_time: UtcDatetime
    wall_time: UtcDatetime | None = Field(None, description="Wall-clock time of publication, for followers.")
    pv_w: Finite
    load_w: Finite
    grid_w: Finite
    battery_w: Finite
    soc_pct: Pct
    diverter_w: Finite = 0.0
    heat_pump_w: Finite = 0.0
    battery_to_diverter_wh: Finite = Field(
        0.0,
        description="Battery energy that went into the diverter since the simulator started (Wh): the "
        "discharge beyond the house's other loads once PV covered them, taken by the diverter.",
    )
    speed: Finite = Field(1.0, description="Simulated seconds per wall second; 0 while the clock is held (--hold).")


ALL_MESSAGES: tuple[type[Message], ...] = (
    InverterState,
    InverterCommand,
    CommandAck,
    BatteryState,
    MeterState,
    Availability,
    DispatcherDecision,
    Plan,
    ModeRequest,
    DispatcherMode,
    DailyStats,
    Event,
    WriteCounters,
    LoadState,
    Forecast,
    RecorderStatus,
    SimTruth,
)
