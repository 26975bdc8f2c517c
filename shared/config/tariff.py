"""Import and export prices. Times are local to ``timezone``."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from .base import Section

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _hhmm(value: str) -> str:
    if not _HHMM.match(value):
        raise ValueError(f"{value!r} is not a time of day HH:MM")
    return value


class Window(Section):
    start: str
    end: str
    price_per_kwh: float

    _check = field_validator("start", "end")(classmethod(lambda cls, v: _hhmm(v)))


class TwoRate(Section):
    """Economy 7 and kin: one cheap window a day, one price otherwise."""

    kind: Literal["two_rate"]
    off_peak: Window
    peak_price_per_kwh: float


class Flat(Section):
    kind: Literal["flat"]
    price_per_kwh: float


class Csv(Section):
    """A file of ``start,price_per_kwh`` rows (ISO start with offset), e.g. Agile half-hours."""

    kind: Literal["csv"]
    path: str


ImportTariff = Annotated[TwoRate | Flat | Csv, Field(discriminator="kind")]
ExportTariff = Annotated[Flat | Csv, Field(discriminator="kind")]


class TariffConfig(Section):
    timezone: str = "Europe/London"
    import_: ImportTariff = Field(
        default_factory=lambda: TwoRate(
            kind="two_rate",
            off_peak=Window(start="00:30", end="07:30", price_per_kwh=0.09),
            peak_price_per_kwh=0.30,
        ),
        alias="import",
    )
    export: ExportTariff = Field(default_factory=lambda: Flat(kind="flat", price_per_kwh=0.15))
    currency: str = "GBP"
    standing_charge_per_day: float = 0.0

    model_config = Section.model_config | {"populate_by_name": True}

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value
