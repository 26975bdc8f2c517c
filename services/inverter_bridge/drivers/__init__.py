"""Inverter control drivers: one module per inverter family, behind ``InverterDriver``.

A second family is a new module here and a row in ``DRIVERS``; the Modbus link and the bridge's
policy stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.modbus import Link
from shared.registers import RegisterMap

from .base import ControlResult, DriverProblem, InverterDriver
from .sofar import SofarPassiveDriver

DRIVERS: dict[str, Callable[[Link, RegisterMap, int], InverterDriver]] = {
    "sofar_me3000sp": SofarPassiveDriver,
}


def driver_for(regmap: RegisterMap, link: Link, unit: int) -> InverterDriver:
    """The control driver for an inverter described by ``regmap``."""
    make = DRIVERS.get(regmap.name)
    if make is None:
        raise DriverProblem(f"no control driver for map {regmap.name} (drivers: {', '.join(sorted(DRIVERS))})")
    return make(link, regmap, unit)


__all__ = ["DRIVERS", "ControlResult", "DriverProblem", "InverterDriver", "SofarPassiveDriver", "driver_for"]
