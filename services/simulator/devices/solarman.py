"""The simulated Solarman V5 logger: ``shared.modbus.SolarmanEmulator`` with the simulator's faults.

The V5 framing and serving live in services/simulator/servers/solarman.py (one implementation for the
project). This adapter only relays RTU frames to the inverter's private RTU-over-TCP server, as a
real logger relays to its RS485 port, and applies the endpoint's fault switches: ``silent`` (no
answer), ``crc`` (a corrupted RTU CRC inside a valid V5 frame) and ``idle_drop_s`` (drop a client
idle that long; switchable while clients are connected).
"""

from __future__ import annotations

from services.simulator.servers.solarman import RtuOverTcpForwarder, SolarmanEmulator

from .faults import DeviceFaults, corrupt_crc


class SolarmanLogger:
    """Serve V5 on ``host:port`` for the inverter behind ``rtu_host:rtu_port``."""

    def __init__(
        self, host: str, port: int, logger_serial: int, rtu_host: str, rtu_port: int, faults: DeviceFaults
    ) -> None:
        self.faults = faults
        self._forward = RtuOverTcpForwarder(rtu_host, rtu_port)
        self.emulator = SolarmanEmulator(
            self._answer, logger_serial=logger_serial, host=host, port=port, idle_timeout_s=self._idle
        )

    def _idle(self) -> float | None:
        return self.faults.idle_drop_s

    async def _answer(self, adu: bytes) -> bytes | None:
        if self.faults.silent:
            return None
        answer = await self._forward(adu)
        if answer is not None and self.faults.crc:
            return corrupt_crc(answer)
        return answer

    async def start(self) -> int:
        await self.emulator.start()
        return self.emulator.port

    async def close(self) -> None:
        await self.emulator.close()
        await self._forward.close()
