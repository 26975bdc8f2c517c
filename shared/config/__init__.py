"""Configuration: one YAML file, environment overrides, unknown keys refused.

Precedence (highest first): environment ``ONGRID_SECTION__KEY`` (``ONGRID_MQTT__HOST=broker``),
then the YAML file (``--config``, else ``$ONGRID_CONFIG``, else ``./ongrid.yaml`` when present),
then the defaults documented in docs/configuration.md.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from shared.topics import check_name

from .devices import BatteryConfig, InverterConfig, MeterConfig
from .dispatcher import DispatcherConfig
from .loads import DiverterLoad, EvLoad, HeatPumpLoad, LoadConfig
from .mqtt import MqttConfig, TlsConfig
from .recorder import InfluxConfig, RecorderConfig
from .simulator import SimulatorConfig
from .tariff import TariffConfig
from .transports import ModbusRtu, ModbusTcp, RtuOverTcp, Serial, SolarmanV5, TcpSerial, Transport

__all__ = [
    "BatteryConfig",
    "ConfigError",
    "ConfigProblem",
    "DispatcherConfig",
    "DiverterLoad",
    "EvLoad",
    "HeatPumpLoad",
    "InfluxConfig",
    "InverterConfig",
    "LoadConfig",
    "MeterConfig",
    "ModbusRtu",
    "ModbusTcp",
    "MqttConfig",
    "OngridConfig",
    "RecorderConfig",
    "RtuOverTcp",
    "Serial",
    "SimulatorConfig",
    "SolarmanV5",
    "TariffConfig",
    "TcpSerial",
    "TlsConfig",
    "Transport",
    "config_source",
    "load_config",
]

DEFAULT_PATH = "ongrid.yaml"
ENV_PATH = "ONGRID_CONFIG"

_yaml_data: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("_yaml_data", default=None)


class ConfigError(Exception):
    """A config that cannot be used. The message names each offending key by its path."""


class ConfigProblem(ValueError):
    """A configuration that passed validation but that a service cannot run with, found by the
    service at start (an unknown register map, a transport that cannot carry its protocol, a port
    that cannot be bound). Names the key by its path and the value given; ``service_main`` adds the
    file and exits with status 2, as for a validation error."""

    def __init__(self, key: str, value: object, why: str) -> None:
        super().__init__(f"{key}: {why} (got {value!r})")
        self.key = key
        self.value = value
        self.why = why


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_data.get() or {})


class OngridConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ONGRID_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    site: str = Field("home", description="Site id: the second level of every topic.")
    mqtt: MqttConfig = Field(MqttConfig(), description="The broker every service connects to.")
    inverters: tuple[InverterConfig, ...] = Field((), description="Battery inverters (inverter-bridge).")
    meters: tuple[MeterConfig, ...] = Field((), description="CT / energy meters (meter-bridge).")
    batteries: tuple[BatteryConfig, ...] = Field(
        (), description="Battery stacks: capacity, limits, SoC bands, and their BMS link if any (bms-bridge)."
    )
    tariff: TariffConfig = Field(TariffConfig(), description="Import and export prices.")
    dispatcher: DispatcherConfig = Field(DispatcherConfig(), description="Planner and controller.")
    loads: tuple[LoadConfig, ...] = Field((), description="Flexible loads the dispatcher arbitrates.")
    recorder: RecorderConfig = Field(RecorderConfig(), description="Storage, spool and statistics.")
    influxdb: InfluxConfig | None = Field(None, description="None: the embedded SQLite store.")
    simulator: SimulatorConfig | None = Field(None, description="The simulated house (scenario files only).")
    clock: Literal["wall", "simulator"] = Field(
        "wall", description="simulator: follow the simulator's clock (accelerated demos and tests)."
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["text", "json"] = Field("text", description="json: one object per line.")

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        return check_name(value, "site")

    @field_validator("inverters", "meters", "batteries", "loads")
    @classmethod
    def _unique_ids(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        seen: set[str] = set()
        for item in value:
            if item.id in seen:
                raise ValueError(f"id {item.id!r} appears twice")
            seen.add(item.id)
        return value

    @model_validator(mode="after")
    def _one_setpoint_step(self) -> OngridConfig:
        # The dispatcher quantises what it asks and the bridge what it writes: with two different
        # steps the inverter would be written values no decision showed (and verified against).
        inverter = self.inverter(self.dispatcher.inverter)
        if inverter is not None and inverter.quantum_w != self.dispatcher.quantum_w:
            raise ValueError(
                f"dispatcher.quantum_w ({self.dispatcher.quantum_w:g}) must equal the quantum_w of inverter "
                f"{inverter.id!r} ({inverter.quantum_w:g})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    def battery(self, battery_id: str | None = None) -> BatteryConfig | None:
        return _pick(self.batteries, battery_id)

    def inverter(self, inverter_id: str | None = None) -> InverterConfig | None:
        return _pick(self.inverters, inverter_id)


def _pick(items: tuple[Any, ...], wanted: str | None) -> Any:
    if wanted is None:
        return items[0] if items else None
    return next((item for item in items if item.id == wanted), None)


def resolve_path(path: str | os.PathLike[str] | None) -> Path | None:
    """The file to read: explicit path, else $ONGRID_CONFIG, else ./ongrid.yaml if it exists."""
    if path:
        return Path(path)
    env = os.environ.get(ENV_PATH)
    if env:
        return Path(env)
    default = Path(DEFAULT_PATH)
    return default if default.exists() else None


def format_errors(error: ValidationError, source: str) -> str:
    """One line naming file, key and value; one line per key under a header when there are several."""
    problems = []
    for item in error.errors(include_url=False):
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        given = item.get("input")
        shown = "" if isinstance(given, dict | list) or item["type"] == "missing" else f" (got {given!r})"
        problems.append(f"{key}: {message}{shown}")
    if len(problems) == 1:
        return f"invalid configuration in {source}: {problems[0]}"
    return "\n".join([f"invalid configuration in {source}:", *(f"  {p}" for p in problems)])


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text: byte {exc.start}: {exc.reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests too deeply to be a configuration") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top, not {type(data).__name__}")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's explanation on one line, with line and column (1-based) and no source excerpt."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return str(exc).replace("\n", " ")
    parts = []
    if exc.problem_mark is not None:
        parts.append(f"line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}:")
    parts.append(exc.problem or "not YAML")
    if exc.context and exc.context_mark is not None:
        parts.append(f"({exc.context} at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})")
    return " ".join(parts)


def config_source(path: str | os.PathLike[str] | None) -> str:
    """The file a service's configuration came from, as error messages name it."""
    resolved = resolve_path(path)
    return str(resolved) if resolved is not None else "defaults and environment"


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> OngridConfig:
    """Read, merge and validate the configuration. Raises ``ConfigError`` with key paths."""
    resolved = resolve_path(path)
    data = read_yaml(resolved) if resolved is not None else {}
    source = str(resolved) if resolved is not None else "defaults and environment"
    token = _yaml_data.set(data)
    try:
        return OngridConfig(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, source)) from None
    except RecursionError:
        raise ConfigError(f"invalid configuration in {source}: nested too deeply") from None
    finally:
        _yaml_data.reset(token)
