"""Faults a test switches on at runtime, per device endpoint (see services/simulator/control.py).

* ``silent``: the device receives but never answers (a dead RS485 line, an unplugged dongle);
* ``crc``: answers with a corrupted CRC (noise on the line);
* ``exception``: answers every read with this Modbus exception code (e.g. 4, device failure);
* ``out_of_range``: answers reads with 0xFFFF in every register (a glitching device: SoC 65535 %);
* ``idle_drop_s`` (Solarman logger): close a TCP client silent for this long; real loggers do ~10 s.
* ``soc_offset_pct`` (inverter): its SoC register reads this many points off the battery's true SoC
  (clamped to 0-100), as an inverter whose own estimate drifted from the BMS's ("app says 99 %,
  inverter says 82 %").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

from services.simulator.servers.modbus import DeviceSource, ServeError

OUT_OF_RANGE_WORD = 0xFFFF


@dataclass
class DeviceFaults:
    silent: bool = False
    crc: bool = False
    exception: int | None = None
    out_of_range: bool = False
    idle_drop_s: float | None = None
    soc_offset_pct: float = 0.0

    def update(self, changes: dict[str, object]) -> None:
        """Apply ``{name: value}`` from the control channel; unknown names and bad values are errors."""
        known = {f.name for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(known))}")
            if name in ("silent", "crc", "out_of_range") and not isinstance(value, bool):
                raise ValueError(f"fault {name!r} needs true/false, got {value!r}")
            if (
                name == "exception"
                and value is not None
                and not (isinstance(value, int) and 1 <= value <= 255)
            ):
                raise ValueError(f"fault 'exception' needs a code 1..255 or null, got {value!r}")
            if (
                name == "idle_drop_s"
                and value is not None
                and not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0)
            ):
                raise ValueError(f"fault 'idle_drop_s' needs seconds > 0 or null, got {value!r}")
            if name == "soc_offset_pct" and not (
                isinstance(value, int | float) and not isinstance(value, bool) and -100 <= value <= 100
            ):
                raise ValueError(f"fault 'soc_offset_pct' needs points -100..100, got {value!r}")
        for name, value in changes.items():
            setattr(self, name, value)

    def clear(self, keep_idle_drop: float | None = None) -> None:
        self.silent = self.crc = self.out_of_range = False
        self.exception = None
        self.idle_drop_s = keep_idle_drop
        self.soc_offset_pct = 0.0

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def corrupt_crc(frame: bytes) -> bytes:
    """Flip the bits of the last byte: the CRC (RTU) or the checksum's neighbour no longer matches."""
    if not frame:
        return frame
    return frame[:-1] + bytes([frame[-1] ^ 0xFF])


def trace_packet(faults: DeviceFaults) -> Callable[[bool, bytes], bytes]:
    """A pymodbus ``trace_packet`` hook that applies ``silent`` and ``crc`` to outgoing frames."""

    def hook(sending: bool, data: bytes) -> bytes:
        if not sending:
            return data
        if faults.silent:
            return b""
        if faults.crc:
            return corrupt_crc(data)
        return data

    return hook


@dataclass
class FaultySource:
    """Wraps a register source with the ``exception`` and ``out_of_range`` faults."""

    inner: DeviceSource
    faults: DeviceFaults

    def read(self, function: int, address: int, count: int) -> list[int]:
        if self.faults.exception is not None:
            raise ServeError(self.faults.exception)
        words = self.inner.read(function, address, count)
        if self.faults.out_of_range:
            return [OUT_OF_RANGE_WORD] * len(words)
        return words

    def write(self, address: int, values: Sequence[int]) -> None:
        if self.faults.exception is not None:
            raise ServeError(self.faults.exception)
        self.inner.write(address, values)
