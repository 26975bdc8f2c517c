"""Pure: how far a meter's reading can be trusted, from its accuracy class as data (accuracy.yaml).

``assess`` marks a reading ``below_accurate_range`` when the current is under the lowest current
for which the class is specified (0.05 Ib for IEC 62053-21 class 1), and gives ``uncertainty_w``:

* from 0.1 Ib up: ``class_pct`` of the reading;
* from 0.05 Ib to 0.1 Ib: ``low_band_class_pct`` of the reading;
* below 0.05 Ib: nothing is specified, so the bound is the power at the edge of the accurate
  range (``accurate_from_a`` x voltage): the reading may be anything that small, or nothing at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

TABLE = Path(__file__).with_name("accuracy.yaml")
NOMINAL_VOLTAGE_V = 230.0

Amps = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Pct = Annotated[float, Field(gt=0, le=10)]


class AccuracySpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    standard: str
    class_pct: Pct
    low_band_class_pct: Pct
    ib_a: Amps
    imax_a: Amps
    starting_current_a: Amps
    accurate_from_a: Amps = Field(description="Lowest current the class is specified at (0.05 Ib).")
    full_class_from_a: Amps = Field(description="Current from which the full class applies (0.1 Ib).")
    verified: bool
    sources: tuple[str, ...]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        chain = (self.starting_current_a, self.accurate_from_a, self.full_class_from_a, self.ib_a, self.imax_a)
        if list(chain) != sorted(chain):
            raise ValueError(
                "need starting_current_a <= accurate_from_a <= full_class_from_a <= ib_a <= imax_a, got "
                + " / ".join(f"{v:g}" for v in chain)
            )
        return self


class AccuracyTableError(ValueError):
    pass


@cache
def load_table(path: Path = TABLE) -> dict[str, AccuracySpec]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise AccuracyTableError(f"{path}: expected a mapping of map name -> accuracy data")
    table = {}
    for name, entry in data.items():
        try:
            table[str(name)] = AccuracySpec.model_validate(entry)
        except ValidationError as exc:
            raise AccuracyTableError(f"{path}: {name}: {exc}") from None
    return table


def spec_for(model: str) -> AccuracySpec | None:
    return load_table().get(model)


@dataclass(frozen=True, slots=True)
class Assessment:
    below_accurate_range: bool
    uncertainty_w: float


def assess(spec: AccuracySpec, power_w: float, current_a: float, voltage_v: float) -> Assessment:
    current = abs(current_a)
    volts = voltage_v if voltage_v > 0 else NOMINAL_VOLTAGE_V
    if current < spec.accurate_from_a:
        floor = spec.accurate_from_a * volts
        return Assessment(True, max(floor, abs(power_w) * spec.low_band_class_pct / 100.0))
    pct = spec.class_pct if current >= spec.full_class_from_a else spec.low_band_class_pct
    return Assessment(False, abs(power_w) * pct / 100.0)
