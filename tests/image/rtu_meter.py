"""An Eastron SDM120 on a serial line for the image's serial test: pymodbus's own RTU server and
datastore (none of ongrid's simulator), holding fixed readings at the register addresses of
Eastron's protocol document (float32, big-endian words, input registers, energies in kWh).

Run on the host: ``python -m tests.image.rtu_meter /dev/pts/N``; prints "serving" once listening.
"""

from __future__ import annotations

import asyncio
import struct
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusSerialServer

# Register address -> value, as an SDM120 reports them (Eastron SDM120 Modbus protocol, table of
# input registers: 0x0000 voltage, 0x0006 current, 0x000C active power, 0x001E power factor,
# 0x0046 frequency, 0x0048/0x004A import/export active energy in kWh).
READINGS: dict[int, float] = {
    0x0000: 231.25,
    0x0006: 4.5,
    0x000C: 1034.5,
    0x0012: 1040.0,
    0x0018: 110.0,
    0x001E: 0.995,
    0x0046: 50.0,
    0x0048: 1234.5,
    0x004A: 67.25,
    0x004C: 10.0,
    0x004E: 2.0,
    0x0156: 1301.75,
}


def registers() -> list[int]:
    words = [0] * 0x200
    for address, value in READINGS.items():
        high, low = struct.unpack(">HH", struct.pack(">f", value))
        words[address], words[address + 1] = high, low
    return words


async def serve(port: str) -> None:
    # pymodbus's device context addresses data blocks from 1 (Modbus "register 1" is address 0).
    device = ModbusDeviceContext(ir=ModbusSequentialDataBlock(1, registers()))
    server = ModbusSerialServer(ModbusServerContext(devices={1: device}, single=False), port=port, baudrate=9600)
    print("serving", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
