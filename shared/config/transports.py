"""How a bridge reaches a device. One discriminated union keyed by ``kind``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import Section

Port = Annotated[int, Field(ge=1, le=65535)]
Unit = Annotated[int, Field(ge=0, le=247, description="Modbus unit (slave) id.")]


class _Link(Section):
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 3.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2


class ModbusTcp(_Link):
    kind: Literal["modbus_tcp"]
    host: str
    port: Port = 502
    unit: Unit = 1


class ModbusRtu(_Link):
    kind: Literal["modbus_rtu"]
    device: str = Field(description="Serial port, e.g. /dev/ttyUSB0.")
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit: Unit = 1


class RtuOverTcp(_Link):
    kind: Literal["rtu_over_tcp"]
    host: str
    port: Port = 502
    unit: Unit = 1


class SolarmanV5(_Link):
    kind: Literal["solarman_v5"]
    host: str
    port: Port = 8899
    logger_serial: Annotated[int, Field(ge=1, le=0xFFFFFFFF)]
    unit: Unit = 1


class Serial(_Link):
    kind: Literal["serial"]
    device: str
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600


class TcpSerial(_Link):
    """A raw serial byte stream over TCP (ser2net, an RS485-to-Ethernet adapter)."""

    kind: Literal["tcp_serial"]
    host: str
    port: Port


Transport = Annotated[
    ModbusTcp | ModbusRtu | RtuOverTcp | SolarmanV5 | Serial | TcpSerial,
    Field(discriminator="kind"),
]

ModbusTransport = ModbusTcp | ModbusRtu | RtuOverTcp | SolarmanV5
