"""Sofar ME3000SP passive mode: setpoints are 0x42 register writes, the heartbeat is 0x49.

From the vendor's "ME3000SP Passive mode protocol" PDF: 0x42 writes one of four command registers
(standby 0x0100 = 0x5555, discharge 0x0101, charge 0x0102, auto 0x0103 = grid target in the vendor
sign) and answers a status word; 0x49 (register 0x2201, value 0x2202) keeps passive mode alive,
without which the inverter returns to its own self-use mode on its passive timeout.

Self-use is handed back with 0x42 auto 0 W, which makes the inverter hold its grid CT at zero
(what its self-use does) at once; the bridge then stops the heartbeats, so the passive timeout
returns it to self-use proper even if that write was lost.

Addresses, bounds and encodings come from the register map (``encode_write``), so a map whose
passive points differ is checked, not assumed.
"""

from __future__ import annotations

from shared.modbus import Link, LinkFramingError
from shared.modbus.sofar_pdu import (
    HEARTBEAT_REGISTER,
    HEARTBEAT_VALUE,
    PASSIVE_FUNCTION,
    HeartbeatRequest,
    HeartbeatResponse,
    PassiveModeRequest,
    PassiveModeResponse,
    PassiveStatus,
)
from shared.registers import RegisterMap, encode_write

from ..limits import AUTO, CHARGE, DISCHARGE, SELF_USE, STANDBY, Setpoint
from .base import ControlResult, DriverProblem, InverterDriver

PASSIVE_FIELDS = (STANDBY, CHARGE, DISCHARGE, AUTO)


def status_text(status: PassiveStatus) -> str:
    """The status word in words: the result and the battery flags that explain a refusal."""
    flags = [
        name
        for name, on in (
            ("battery full", status.battery_full),
            ("battery flat", status.battery_flat),
            ("charge disabled", not status.charge_enabled),
            ("discharge disabled", not status.discharge_enabled),
        )
        if on
    ]
    return status.result_text + (f" ({', '.join(flags)})" if flags else "")


class SofarPassiveDriver(InverterDriver):
    def __init__(self, link: Link, regmap: RegisterMap, unit: int) -> None:
        points = {p.field: p for p in regmap.points}
        missing = [f for f in PASSIVE_FIELDS if f not in points]
        if missing:
            raise DriverProblem(f"map {regmap.name} has no passive-mode points {missing}")
        wrong = [f for f in PASSIVE_FIELDS if points[f].write_function != PASSIVE_FUNCTION]
        if wrong:
            raise DriverProblem(f"map {regmap.name}: passive-mode points {wrong} are not written with 0x42")
        self.link = link
        self.regmap = regmap
        self.unit = unit

    async def set_battery(self, setpoint: Setpoint) -> ControlResult:
        if not setpoint.passive:
            raise ValueError(f"{setpoint.describe()} is not a passive-mode setpoint")
        return await self._passive(setpoint)

    async def self_use(self) -> ControlResult:
        return await self._passive(SELF_USE)

    async def heartbeat(self) -> None:
        # Repeating a heartbeat changes nothing, so the link may retry it.
        answer = await self.link.raw(HeartbeatRequest(), HeartbeatResponse, self.unit, retry=True)
        if (answer.address, answer.value) != (HEARTBEAT_REGISTER, HEARTBEAT_VALUE):
            raise LinkFramingError(self.link.endpoint, "heartbeat answer does not echo the request")

    async def _passive(self, setpoint: Setpoint) -> ControlResult:
        request = encode_write(self.regmap, setpoint.field, setpoint.value)  # bounds checked here
        # Sent once (no link retry): the budget counted one write, and one is all that may land.
        answer = await self.link.raw(
            PassiveModeRequest(request.address, request.registers[0]), PassiveModeResponse, self.unit
        )
        status = answer.passive_status
        return ControlResult(True) if status.accepted else ControlResult(False, status_text(status))
