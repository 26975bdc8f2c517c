"""Decoded register values -> the topic contract's models.

Decoded field names already match ``InverterState`` / ``MeterState``; this module only picks the
fields a model has, merges the fault bitfields, and says which required fields are missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.messages import InverterControl, InverterState, MeterRole, MeterState

from .codec import Value
from .model import RegisterMap


class MissingFieldsError(ValueError):
    """The decoded values lack fields the model requires (a map or a poll-group problem)."""


def collect_faults(regmap: RegisterMap, values: Mapping[str, Value], into: str = "faults") -> tuple[str, ...]:
    """Every set-bit name of the bitfields that declare ``collect: <into>``, in map order."""
    names: list[str] = []
    for point in regmap.points:
        if point.collect == into and point.field in values:
            found = values[point.field]
            assert isinstance(found, tuple)
            names.extend(found)
    return tuple(names)


def _pick(model: type[InverterState] | type[MeterState], values: Mapping[str, Value]) -> dict[str, Any]:
    return {name: values[name] for name in model.model_fields if name in values}


def _require(
    model: type[InverterState] | type[MeterState], given: dict[str, Any], regmap: RegisterMap
) -> None:
    missing = [
        name
        for name, info in model.model_fields.items()
        if info.is_required() and name not in given and name not in ("ts", "device", "model", "role")
    ]
    if missing:
        raise MissingFieldsError(f"{model.__name__} from map {regmap.name} lacks {', '.join(missing)}")


def to_inverter_state(
    regmap: RegisterMap,
    values: Mapping[str, Value],
    *,
    device: str,
    ts: datetime,
    control: InverterControl = InverterControl.UNKNOWN,
) -> InverterState:
    """An ``InverterState`` from one poll's decoded values (all poll groups merged)."""
    given = _pick(InverterState, values)
    given["faults"] = collect_faults(regmap, values)
    _require(InverterState, given, regmap)
    return InverterState(ts=ts, device=device, model=regmap.name, control=control, **given)


def to_meter_state(
    regmap: RegisterMap,
    values: Mapping[str, Value],
    *,
    device: str,
    ts: datetime,
    role: MeterRole,
    invert: bool = False,
    **extra: Any,
) -> MeterState:
    """A ``MeterState``. ``invert`` flips power for a CT clamped on backwards (energies swap too)."""
    given = _pick(MeterState, values)
    if invert:
        given["power_w"] = -float(given["power_w"]) if "power_w" in given else None
        if "import_energy_wh" in given and "export_energy_wh" in given:
            given["import_energy_wh"], given["export_energy_wh"] = (
                given["export_energy_wh"],
                given["import_energy_wh"],
            )
    _require(MeterState, given, regmap)
    return MeterState(ts=ts, device=device, model=regmap.name, role=role, **given, **extra)
