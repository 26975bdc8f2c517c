"""The Sofar ME3000SP as its registers show it: values for the register map, and the 0x42/0x49 hook.

The register map (shared/registers/maps/sofar_me3000sp.yaml) owns addresses, scales and vendor signs;
this module only says what the inverter *reads* in project units and signs, from its own CTs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.modbus.sofar_pdu import (
    AUTO_REGISTER,
    CHARGE_REGISTER,
    DISCHARGE_REGISTER,
    HEARTBEAT_FUNCTION,
    PASSIVE_FUNCTION,
    STANDBY_REGISTER,
    STANDBY_VALUE,
)
from shared.registers import Value

from ..physics.inverter import CommandStatus, PassiveMode, RunningState

if TYPE_CHECKING:
    from ..physics.house import House

_RUNNING = {
    RunningState.WAIT: "wait",
    RunningState.CHECK_CHARGE: "check_charge",
    RunningState.CHARGING: "charging",
    RunningState.CHECK_DISCHARGE: "check_discharge",
    RunningState.DISCHARGING: "discharging",
    RunningState.EPS: "eps",
    RunningState.FAULT: "fault",
    RunningState.PERMANENT_FAULT: "permanent_fault",
}


def inverter_values(house: House, serial: str) -> dict[str, Value]:
    """Every readable field of the ME3000SP map, in project units (W, V, A, Wh; discharge/import +)."""
    pack = house.battery.snapshot()
    flows = house.flows
    inv = house.inverter
    c = house.counters
    grid_w = house.inverter_grid_w
    pv_w = house.inverter_pv_w
    battery_w = flows.battery_w
    voltage = house.grid_voltage_v()
    eps_w = flows.load_w if flows.eps and not flows.blackout else 0.0
    faults: tuple[str, ...] = ("ID01",) if inv.faulted else ()  # ID01: grid over-voltage, the usual first fault
    return {
        "running_state": _RUNNING[inv.running],
        "fault_1": faults,
        "fault_2": (),
        "fault_3": (),
        "fault_4": (),
        "fault_5": (),
        "grid_voltage_v": voltage,
        "grid_current_a": battery_w / voltage if voltage > 0 else 0.0,
        "grid_frequency_hz": house.grid_frequency_hz(),
        "battery_power_w": battery_w,
        "battery_voltage_v": pack.voltage_v,
        "battery_current_a": pack.current_a,
        "battery_soc_pct": round(pack.soc_pct),
        "battery_temp_c": round(pack.temp_c),
        "grid_power_w": grid_w,
        "load_power_w": max(0.0, pv_w + grid_w + battery_w),
        "inverter_power_w": battery_w,
        "pv_power_w": pv_w,
        "eps_voltage_v": 230.0 if flows.eps and not flows.blackout else 0.0,
        "eps_power_w": eps_w,
        "pv_energy_today_wh": c.pv_today_wh,
        "export_energy_today_wh": c.export_today_wh,
        "import_energy_today_wh": c.import_today_wh,
        "load_energy_today_wh": c.load_today_wh,
        "pv_energy_total_wh": c.pv_total_wh,
        "export_energy_total_wh": c.export_total_wh,
        "import_energy_total_wh": c.import_total_wh,
        "load_energy_total_wh": c.load_total_wh,
        "inverter_alerts": (),
        "battery_cycles": pack.cycles,
        "inverter_temp_c": round(pack.temp_c + 12 + abs(battery_w) / 250.0),
        "heatsink_temp_c": round(pack.temp_c + 8 + abs(battery_w) / 200.0),
        "country_code": 4,
        "battery_fault_1": (),
        "battery_fault_2": (),
        "battery_fault_3": (),
        "battery_fault_4": (),
        "battery_fault_5": (),
        "generation_time_today_min": min(1440.0, round(c.minutes_generating_today)),
        "generation_time_total_h": round(c.hours_generating_total),
        "battery_type": "pylon",
        "battery_capacity_ah": round(sum(m.full_ah for m in pack.modules)),
        "energy_management_model": 0,
        "battery_max_charge_voltage_v": 53.2,
        "battery_max_charge_current_a": pack.charge_current_limit_a,
        "battery_overvoltage_protection_v": 54.0,
        "battery_min_discharge_voltage_v": 45.0,
        "battery_max_discharge_current_a": pack.discharge_current_limit_a,
        "battery_undervoltage_protection_v": 44.5,
        "battery_discharge_depth_pct": round(100 - house.params.battery.min_soc_pct),
        "battery_discharge_periods": 0,
        "battery_empty_voltage_v": 46.0,
        "battery_full_voltage_v": 53.0,
        "production_code": 0x0A01,
        "serial_number": serial,
        "software_version": "V140",
        "hardware_version": "V100",
    }


def custom_handler(house: House):  # type: ignore[no-untyped-def]
    """``(unit, function, register, value) -> status word`` for 0x42 passive mode and 0x49 heartbeat."""

    def handle(unit: int, function: int, register: int, value: int) -> int:
        now = house.now_s
        inverter = house.inverter
        if function == HEARTBEAT_FUNCTION:
            inverter.heartbeat(now)
            return 0
        if function != PASSIVE_FUNCTION:
            return CommandStatus.INVALID_MODE
        inverter.writes_received += 1
        if register == STANDBY_REGISTER:
            status = (
                inverter.command(PassiveMode.STANDBY, 0, now)
                if value == STANDBY_VALUE
                else CommandStatus.INVALID_DATA
            )
        elif register == DISCHARGE_REGISTER:
            status = inverter.command(PassiveMode.DISCHARGE, value, now)
        elif register == CHARGE_REGISTER:
            status = inverter.command(PassiveMode.CHARGE, value, now)
        elif register == AUTO_REGISTER:
            # 0x5555 is the old firmware's "0 W"; otherwise the value is a signed 16-bit target.
            target = 0 if value == STANDBY_VALUE else (value - 0x10000 if value & 0x8000 else value)
            status = inverter.command(PassiveMode.AUTO, target, now)
        else:
            status = CommandStatus.INVALID_MODE
        max_charge, max_discharge = house.battery.limits_w(60.0)
        return (inverter.status_bits(max_charge, max_discharge) << 8) | int(status)

    return handle
