"""Eastron SDM120 / SDM630 values from a simulated CT meter (float32 input registers, FC 0x04)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from shared.registers import Value

if TYPE_CHECKING:
    from ..physics.house import House


def meter_values(house: House, meter_id: str, model: str) -> dict[str, Value]:
    """What the meter displays now; power is signed as wired (import +), energies in Wh."""
    meter = house.meters[meter_id]
    reading = meter.read(house.grid_voltage_v(), house.grid_frequency_hz())
    apparent = abs(reading.power_w) / abs(reading.power_factor) if reading.power_factor else 0.0
    reactive = math.sqrt(max(0.0, apparent**2 - reading.power_w**2))
    values: dict[str, Value] = {
        "voltage_v": reading.voltage_v,
        "current_a": reading.current_a,
        "power_w": reading.power_w,
        "apparent_power_va": apparent,
        "reactive_power_var": reactive,
        "power_factor": reading.power_factor,
        "frequency_hz": reading.frequency_hz,
        "import_energy_wh": reading.import_kwh * 1000.0,
        "export_energy_wh": reading.export_kwh * 1000.0,
        "import_reactive_energy_varh": 0.0,
        "export_reactive_energy_varh": 0.0,
        "total_energy_wh": (reading.import_kwh + reading.export_kwh) * 1000.0,
    }
    if model == "eastron_sdm120":
        values["phase_angle_deg"] = math.degrees(math.acos(min(1.0, abs(reading.power_factor))))
    if model == "eastron_sdm630":
        # A single-phase house on a three-phase meter: everything on L1.
        values |= {
            "l1_voltage_v": reading.voltage_v,
            "l2_voltage_v": 0.0,
            "l3_voltage_v": 0.0,
            "l1_current_a": reading.current_a,
            "l2_current_a": 0.0,
            "l3_current_a": 0.0,
            "l1_power_w": reading.power_w,
            "l2_power_w": 0.0,
            "l3_power_w": 0.0,
            "l1_power_factor": reading.power_factor,
            "l2_power_factor": 1.0,
            "l3_power_factor": 1.0,
        }
    return values
