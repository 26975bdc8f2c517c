"""The simulated house (a scenario). Read by services/simulator; the rest of the fleet ignores it.

A scenario file is also a fleet config: its ``inverters``/``meters``/``batteries`` sections point at
the endpoints listed here under ``simulator.devices``. See docs/simulator.md for every key.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from .base import Section
from .transports import Port

Pct = Annotated[float, Field(ge=0, le=100)]
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]


class Location(Section):
    latitude: Annotated[float, Field(ge=-90, le=90)] = 53.6
    longitude: Annotated[float, Field(ge=-180, le=180)] = -0.5
    altitude_m: float = 10.0
    timezone: str = "Europe/London"


class PvArraySection(Section):
    kwp: NonNegative = 4.0
    tilt_deg: Annotated[float, Field(ge=0, le=90)] = 30.0
    azimuth_deg: Annotated[float, Field(ge=0, lt=360)] = Field(
        141.0, description="Compass bearing, 180 = south."
    )
    losses_pct: Annotated[float, Field(ge=0, lt=100)] = 14.0
    ac_limit_w: Positive = Field(3680.0, description="The PV inverter's AC rating.")
    gamma_pdc: float = Field(-0.0037, description="Power temperature coefficient, 1/K.")


class CloudWeather(Section):
    """Clear sky with the seeded stochastic cloudiness model (docs/simulator.md)."""

    kind: Literal["clouds"] = "clouds"
    monthly_clearness: tuple[float, ...] | None = Field(
        None, description="Mean clear-sky index per month, Jan..Dec; default calibrated for the UK."
    )


class FileWeather(Section):
    kind: Literal["file"]
    path: str
    format: Literal["epw", "tmy3", "pvgis"] = "epw"


Weather = Annotated[CloudWeather | FileWeather, Field(discriminator="kind")]


class DemandSection(Section):
    annual_kwh: Positive = 3200.0
    always_on_w: NonNegative = 90.0
    fridge_w: NonNegative = 90.0
    appliances_per_day: dict[Literal["kettle", "oven", "shower", "washing_machine"], NonNegative] = Field(
        default_factory=dict, description="Override the mean number of events a day per appliance."
    )


class WeakModuleSection(Section):
    index: Annotated[int, Field(ge=0)]
    capacity_pct: Annotated[float, Field(gt=0, le=100)] = 85.0
    fade_pct_per_cycle: NonNegative = 0.02
    low_cell_mv: NonNegative = 25.0


class BatterySection(Section):
    modules: Annotated[int, Field(ge=1, le=16)] = 5
    module_model: str = "US2000B-Plus"
    module_ah: Positive = 50.0
    nominal_module_v: Positive = 48.0
    charge_efficiency: Annotated[float, Field(gt=0, le=1)] = 0.96
    discharge_efficiency: Annotated[float, Field(gt=0, le=1)] = 0.96
    max_charge_w: Positive = 3000.0
    max_discharge_w: Positive = 3000.0
    min_soc_pct: Pct = 10.0
    max_soc_pct: Pct = 97.0
    initial_soc_pct: Pct = 50.0
    module_charge_limit_a: Positive = 25.0
    module_discharge_limit_a: Positive = 25.0
    ambient_c: float = 18.0
    initial_cycles: NonNegative = 0.0
    weak_module: WeakModuleSection | None = None

    @model_validator(mode="after")
    def _window(self) -> Self:
        if not self.min_soc_pct < self.max_soc_pct:
            raise ValueError(f"need min_soc_pct < max_soc_pct, got {self.min_soc_pct} / {self.max_soc_pct}")
        if self.weak_module is not None and self.weak_module.index >= self.modules:
            raise ValueError(f"weak_module.index {self.weak_module.index} outside 0..{self.modules - 1}")
        return self


class CtErrorSection(Section):
    accuracy_pct: NonNegative = 1.0
    floor_w: NonNegative = 8.0
    noise_w: NonNegative = 3.0
    starting_current_a: NonNegative = 0.08
    wander_w: NonNegative = 25.0


class InverterSection(Section):
    rated_w: Positive = 3000.0
    passive_timeout_s: Positive = 60.0
    ramp_w_per_s: Positive = 1000.0
    eps_enabled: bool = True
    self_use_band_w: NonNegative = Field(
        0.0, description="Its own self-use leaves the battery be while its CT reads the grid within this of zero (W)."
    )
    ct: CtErrorSection = CtErrorSection()
    serial: str = Field("SE1ES000000001", max_length=14)


class DiverterSection(Section):
    """A CT-driven immersion diverter (Solic 200, iBoost): its own clamp on the grid tails."""

    rated_w: Positive = 3000.0
    tank_kwh: Positive = 7.0
    margin_w: NonNegative = Field(50.0, description="Export it leaves while diverting (W).")
    start_w: NonNegative = Field(100.0, description="Export its clamp must see before it starts from idle (W).")
    reaction_s: NonNegative = Field(1.0, description="Time constant of its proportional response (s).")
    daily_use_kwh: NonNegative = 5.0
    ct: CtErrorSection = Field(CtErrorSection(), description="Its own clamp's error.")


class HeatPumpSection(Section):
    heat_loss_w_per_k: Positive = 180.0
    indoor_c: float = 20.0
    heating_off_c: float = 15.5
    min_w: Positive = 400.0
    max_w: Positive = 2500.0
    switch_topic: str | None = Field(
        None,
        description="MQTT topic of its enable relay (a heat pump load's switch_topic); it runs until told "
        "payload_off there. Needs the simulator on MQTT (--mqtt).",
    )
    payload_on: str = "ON"
    payload_off: str = "OFF"


class ListenTcp(Section):
    kind: Literal["modbus_tcp"]
    host: str = "127.0.0.1"
    port: Port


class ListenRtu(Section):
    """A pty pair made with socat: the bridge opens ``device``; the simulator serves the other end."""

    kind: Literal["modbus_rtu"]
    device: str
    baudrate: int = 9600


class ListenSolarman(Section):
    kind: Literal["solarman_v5"]
    host: str = "127.0.0.1"
    port: Port
    logger_serial: Annotated[int, Field(ge=1, le=0xFFFFFFFF)]
    idle_timeout_s: Annotated[float, Field(gt=0)] | None = Field(
        10.0, description="Drop a client silent this long, like real loggers; null keeps it open."
    )


class ListenSerial(Section):
    """The Pylontech BMS: a pty the simulator creates at ``device`` (or ``host``/``port`` over TCP)."""

    kind: Literal["serial"]
    device: str
    baudrate: Literal[9600, 115200] = 9600


class ListenTcpSerial(Section):
    kind: Literal["tcp_serial"]
    host: str = "127.0.0.1"
    port: Port
    baudrate: Literal[9600, 115200] = 9600


Listen = Annotated[
    ListenTcp | ListenRtu | ListenSolarman | ListenSerial | ListenTcpSerial, Field(discriminator="kind")
]


class SimMeter(Section):
    """A CT meter in the house: where it is clamped and how it errs."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    position: Literal["grid", "pv", "load", "battery", "diverter", "heat_pump"]
    error: CtErrorSection = CtErrorSection()


class SimDevice(Section):
    """One endpoint on the wire. The same inverter may be served on several endpoints at once."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    role: Literal["inverter", "meter", "battery"]
    model: str = Field(description="sofar_me3000sp, eastron_sdm120, eastron_sdm630, pylontech_rs485.")
    meter: str | None = Field(None, description="For role meter: the simulator.meters id it reads.")
    unit: Annotated[int, Field(ge=1, le=247)] = 1
    first_address: Annotated[int, Field(ge=1, le=254)] = 2
    listen: Listen

    @model_validator(mode="after")
    def _meter(self) -> Self:
        if self.role == "meter" and self.meter is None:
            raise ValueError(f"device {self.id!r}: needs 'meter': the simulated CT it reads")
        return self


class ControlSection(Section):
    """The side channel for tests: fault injection and ground truth over HTTP."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 15080
    truth_interval_s: Positive = Field(1.0, description="Real seconds between SimTruth publications on MQTT.")
    mqtt: bool = Field(True, description="Publish SimTruth on MQTT when the broker is reachable.")


class SimulatorConfig(Section):
    seed: int = 1
    speed: Positive = Field(1.0, description="Simulated seconds per real second (60: a day in 24 min).")
    start: str | None = Field(None, description="Date (local midnight) or ISO datetime; now when unset.")
    step_s: Annotated[float, Field(gt=0, le=60)] = Field(1.0, description="Simulated seconds per step.")
    run_dir: str = Field("var/run", description="Where ptys and their links are created.")
    location: Location = Location()
    pv: PvArraySection = PvArraySection()
    weather: Weather = CloudWeather()
    demand: DemandSection = DemandSection()
    battery: BatterySection = BatterySection()
    inverter: InverterSection = InverterSection()
    meters: tuple[SimMeter, ...] = (SimMeter(id="grid", position="grid"),)
    diverter: DiverterSection | None = None
    heat_pump: HeatPumpSection | None = None
    devices: tuple[SimDevice, ...] = ()
    control: ControlSection = ControlSection()

    @model_validator(mode="after")
    def _references(self) -> Self:
        meter_ids = {m.id for m in self.meters}
        seen: set[str] = set()
        for device in self.devices:
            if device.id in seen:
                raise ValueError(f"device id {device.id!r} appears twice")
            seen.add(device.id)
            if device.meter is not None and device.meter not in meter_ids:
                raise ValueError(
                    f"device {device.id!r}: meter {device.meter!r} is not in simulator.meters "
                    f"({sorted(meter_ids)})"
                )
        return self
