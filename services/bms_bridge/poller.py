"""I/O: read one Pylontech stack through a bus client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.config import BatteryConfig
from shared.config.transports import Serial, TcpSerial
from shared.pylontech import PylontechError
from shared.pylontech.client import Endpoint, PylontechClient

from .state import ModuleReading


class UnsupportedTransport(ValueError):
    pass


def endpoint_for(battery: BatteryConfig) -> Endpoint:
    transport = battery.transport
    if transport is None:
        raise UnsupportedTransport(f"battery {battery.id}: no transport, so no BMS link to read")
    if isinstance(transport, Serial):
        return Endpoint.parse(transport.device, transport.baudrate)
    if isinstance(transport, TcpSerial):
        return Endpoint(host=transport.host, port=transport.port)
    raise UnsupportedTransport(
        f"battery {battery.id}: transport kind {transport.kind!r} cannot carry Pylontech RS485; "
        "use 'serial' (device, baudrate) or 'tcp_serial' (host, port)"
    )


@dataclass(frozen=True, slots=True)
class StackPoller:
    battery: BatteryConfig
    client: PylontechClient

    @property
    def addresses(self) -> range:
        first = self.battery.first_address
        return range(first, first + self.battery.modules)

    async def read(self) -> list[ModuleReading]:
        """0x42, 0x44 and 0x92 for every module; any failure fails the whole poll."""
        readings = []
        for adr in self.addresses:
            analog = await self.client.analog(adr)
            alarms = await self.client.alarms(adr)
            limits = await self.client.charge_discharge(adr)
            readings.append(ModuleReading(adr, analog, alarms, limits))
        return readings

    async def identity(self) -> dict[str, Any]:
        """0x47 and 0x51 once for the stack, 0x93 per module: what the BMS says it is."""
        first = self.battery.first_address
        params = await self.client.system_parameters(first)
        maker = await self.client.manufacturer_info(first)
        serials: list[str | None] = []
        for adr in self.addresses:
            try:
                serials.append((await self.client.serial_number(adr)).serial)
            except PylontechError:
                serials.append(None)
        charge_c = params.charge_temp_range_c
        discharge_c = params.discharge_temp_range_c
        return {
            "device_name": maker.device_name,
            "software_version": f"{maker.software_version[0]}.{maker.software_version[1]}",
            "manufacturer": maker.manufacturer,
            "serials": serials,
            "cell_high_v": params.cell_high_mv / 1000,
            "cell_low_v": params.cell_low_mv / 1000,
            "module_high_v": params.module_high_mv / 1000,
            "module_low_v": params.module_low_mv / 1000,
            "charge_temp_min_c": charge_c[0],
            "charge_temp_max_c": charge_c[1],
            "discharge_temp_min_c": discharge_c[0],
            "discharge_temp_max_c": discharge_c[1],
            # Either sign, as in 0x92: firmware differs (python-pylontech's README: -10.0).
            "module_charge_current_limit_a": abs(params.charge_current_limit_a),
            "module_discharge_current_limit_a": abs(params.discharge_current_limit_a),
        }
