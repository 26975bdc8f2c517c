"""INFO payloads of the Pylontech RS485 commands, both directions.

Each payload is a frozen dataclass holding the *wire integers* (mV, mAh, 0.1 A, 0.1 K) so that
encode -> decode is exact; properties give SI values. Units (PYLON low-voltage protocol v3.3,
cross-checked against python-pylontech 0.3.3 and pylontech 0.1.3):

* cell and module voltages: U16 mV
* temperatures: S16 in 0.1 K, degC = (raw - 2731) / 10; the first one is the BMS board
* current: S16 in 0.1 A, **charge positive** (the opposite of the project's AC-bus convention)
* capacities: U16 mAh, or with UDI = 4 the U16 fields read 0xFFFF and U24 mAh fields follow
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, TypeVar

from .errors import EncodeError, PylontechDecodeError

KELVIN_OFFSET_DK = 2731
ALL_MODULES = 0xFF
U16_ABSENT = 0xFFFF

T = TypeVar("T")
M = TypeVar("M")


def dk_to_c(raw: int) -> float:
    return (raw - KELVIN_OFFSET_DK) / 10.0


def c_to_dk(temp_c: float) -> int:
    return round(temp_c * 10.0) + KELVIN_OFFSET_DK


class _Reader:
    """Reads big-endian integers from INFO bytes; every failure names the field and offset."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = bytes(data)
        self.what = what
        self.pos = 0

    def _take(self, field_name: str, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise PylontechDecodeError(
                f"{self.what}.{field_name}",
                self.pos,
                self.data,
                f"needs {size} byte(s), only {len(self.data) - self.pos} left",
            )
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def u8(self, field_name: str) -> int:
        return self._take(field_name, 1)[0]

    def u16(self, field_name: str) -> int:
        return int.from_bytes(self._take(field_name, 2), "big")

    def s16(self, field_name: str) -> int:
        return int.from_bytes(self._take(field_name, 2), "big", signed=True)

    def u24(self, field_name: str) -> int:
        return int.from_bytes(self._take(field_name, 3), "big")

    def ascii(self, field_name: str, size: int) -> str:
        start = self.pos
        chunk = self._take(field_name, size)
        try:
            return chunk.decode("ascii").rstrip("\x00 ")
        except UnicodeDecodeError:
            raise PylontechDecodeError(f"{self.what}.{field_name}", start, self.data, "is not ASCII text") from None

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    def end(self) -> None:
        if self.pos != len(self.data):
            raise PylontechDecodeError(
                self.what, self.pos, self.data, f"{len(self.data) - self.pos} unexpected trailing byte(s)"
            )


class _Writer:
    def __init__(self, what: str) -> None:
        self.what = what
        self.out = bytearray()

    def _int(self, field_name: str, value: int, size: int, signed: bool) -> None:
        try:
            self.out += int(value).to_bytes(size, "big", signed=signed)
        except OverflowError:
            kind = f"{'S' if signed else 'U'}{size * 8}"
            raise EncodeError(f"{self.what}.{field_name}", value, f"does not fit {kind}") from None

    def u8(self, field_name: str, value: int) -> None:
        self._int(field_name, value, 1, False)

    def u16(self, field_name: str, value: int) -> None:
        self._int(field_name, value, 2, False)

    def s16(self, field_name: str, value: int) -> None:
        self._int(field_name, value, 2, True)

    def u24(self, field_name: str, value: int) -> None:
        self._int(field_name, value, 3, False)

    def ascii(self, field_name: str, value: str, size: int) -> None:
        try:
            data = value.encode("ascii")
        except UnicodeEncodeError:
            raise EncodeError(f"{self.what}.{field_name}", value, "must be ASCII") from None
        if len(data) > size:
            raise EncodeError(f"{self.what}.{field_name}", value, f"longer than {size} bytes")
        self.out += data.ljust(size, b"\x00")

    def count(self, field_name: str, items: tuple[object, ...]) -> None:
        self.u8(f"{field_name} count", len(items))


def _repeat(n: int, read: Callable[[int], T]) -> tuple[T, ...]:
    return tuple(read(i) for i in range(n))


# --- 0x42 analog values -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModuleAnalog:
    cell_mv: tuple[int, ...]
    temps_dk: tuple[int, ...]
    current_da: int
    voltage_mv: int
    remaining_mah: int
    total_mah: int
    cycles: int
    udi: int = 2

    @property
    def cell_voltages_v(self) -> tuple[float, ...]:
        return tuple(mv / 1000.0 for mv in self.cell_mv)

    @property
    def temps_c(self) -> tuple[float, ...]:
        return tuple(dk_to_c(t) for t in self.temps_dk)

    @property
    def current_a(self) -> float:
        """Module current, charge ``+`` as the BMS reports it."""
        return self.current_da / 10.0

    @property
    def voltage_v(self) -> float:
        return self.voltage_mv / 1000.0

    @property
    def remaining_ah(self) -> float:
        return self.remaining_mah / 1000.0

    @property
    def total_ah(self) -> float:
        return self.total_mah / 1000.0

    def _encode(self, w: _Writer) -> None:
        w.count("cells", self.cell_mv)
        for i, mv in enumerate(self.cell_mv):
            w.u16(f"cell[{i}]", mv)
        w.count("temps", self.temps_dk)
        for i, dk in enumerate(self.temps_dk):
            w.s16(f"temp[{i}]", dk)
        w.s16("current", self.current_da)
        w.u16("voltage", self.voltage_mv)
        if self.udi == 2:
            w.u16("remaining", self.remaining_mah)
            w.u8("udi", 2)
            w.u16("total", self.total_mah)
            w.u16("cycles", self.cycles)
        elif self.udi == 4:
            w.u16("remaining", U16_ABSENT)
            w.u8("udi", 4)
            w.u16("total", U16_ABSENT)
            w.u16("cycles", self.cycles)
            w.u24("remaining_u24", self.remaining_mah)
            w.u24("total_u24", self.total_mah)
        else:
            raise EncodeError(f"{w.what}.udi", self.udi, "must be 2 or 4")

    @classmethod
    def _decode(cls, r: _Reader) -> ModuleAnalog:
        cells = _repeat(r.u8("cells count"), lambda i: r.u16(f"cell[{i}]"))
        temps = _repeat(r.u8("temps count"), lambda i: r.s16(f"temp[{i}]"))
        current = r.s16("current")
        voltage = r.u16("voltage")
        remaining = r.u16("remaining")
        udi_at = r.pos
        udi = r.u8("udi")
        total = r.u16("total")
        cycles = r.u16("cycles")
        if udi == 4:
            remaining = r.u24("remaining_u24")
            total = r.u24("total_u24")
        elif udi != 2:
            raise PylontechDecodeError(f"{r.what}.udi", udi_at, r.data, f"user-defined item count {udi} is not 2 or 4")
        return cls(cells, temps, current, voltage, remaining, total, cycles, udi)

    @staticmethod
    def udi_for(remaining_mah: int, total_mah: int) -> int:
        """UDI 2 when both capacities fit U16 (< 65.535 Ah), else UDI 4 (large modules)."""
        return 2 if max(remaining_mah, total_mah) < U16_ABSENT else 4


@dataclass(frozen=True, slots=True)
class AnalogResponse:
    """0x42 answer. ``command`` is the module's address, or the module count for ``FF`` queries."""

    modules: tuple[ModuleAnalog, ...]
    command: int
    all_modules: bool = False
    info_flag: int = 0

    def encode(self) -> bytes:
        return _encode_modules("analog", self.info_flag, self.command, self.modules, self.all_modules)

    @classmethod
    def decode(cls, info: bytes, *, all_modules: bool = False) -> AnalogResponse:
        flag, command, modules = _decode_modules(info, "analog", all_modules, ModuleAnalog._decode)
        return cls(modules, command, all_modules, flag)


class _ModuleRecord(Protocol):
    def _encode(self, w: _Writer) -> None: ...


def _encode_modules(
    what: str, info_flag: int, command: int, modules: Sequence[_ModuleRecord], all_modules: bool
) -> bytes:
    """INFOFLAG, the command byte (address or module count), then one record per module."""
    w = _Writer(what)
    w.u8("info_flag", info_flag)
    _command(w, command, tuple(modules), all_modules)
    for i, module in enumerate(modules):
        w.what = f"{what}.module[{i}]"
        module._encode(w)
    return bytes(w.out)


def _decode_modules(
    info: bytes, what: str, all_modules: bool, decode: Callable[[_Reader], M]
) -> tuple[int, int, tuple[M, ...]]:
    """The inverse of ``_encode_modules``: (INFOFLAG, command byte, the module records)."""
    r = _Reader(info, what)
    flag = r.u8("info_flag")
    command, count = _read_command(r, all_modules)
    modules = []
    for i in range(count):
        r.what = f"{what}.module[{i}]"
        modules.append(decode(r))
    r.what = what
    r.end()
    return flag, command, tuple(modules)


def _command(w: _Writer, command: int, modules: tuple[object, ...], all_modules: bool) -> None:
    if all_modules:
        if command != len(modules):
            raise EncodeError(f"{w.what}.command", command, f"must equal the module count {len(modules)}")
    elif len(modules) != 1:
        raise EncodeError(f"{w.what}.modules", len(modules), "a single-module answer holds one module")
    w.u8("command", command)


def _read_command(r: _Reader, all_modules: bool) -> tuple[int, int]:
    command = r.u8("command")
    return command, (command if all_modules else 1)


# --- 0x44 alarms ------------------------------------------------------------------------------


class AlarmLevel(IntEnum):
    NORMAL = 0x00
    BELOW = 0x01
    ABOVE = 0x02
    OTHER = 0xF0


def _level_word(level: int) -> str | None:
    return {0x00: None, 0x01: "low", 0x02: "high"}.get(level, "fault")


# Status bits per PYLON protocol v3.3 (not in the team's notes: taken from the vendor document as
# reproduced by community tools). Status 1 holds protections, 4 and 5 one bit per faulty cell.
STATUS1_BITS: dict[int, str] = {
    7: "module_under_voltage",
    6: "charge_over_temperature",
    5: "discharge_over_temperature",
    4: "discharge_over_current",
    2: "charge_over_current",
    1: "cell_under_voltage",
    0: "module_over_voltage",
}


@dataclass(frozen=True, slots=True)
class ModuleAlarms:
    cells: tuple[int, ...]
    temps: tuple[int, ...]
    charge_current: int = 0
    module_voltage: int = 0
    discharge_current: int = 0
    status: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)

    def names(self) -> tuple[str, ...]:
        """Active alarms as stable snake_case names, e.g. ``cell3_voltage_high``."""
        out: list[str] = []
        for i, level in enumerate(self.cells, start=1):
            if (word := _level_word(level)) is not None:
                out.append(f"cell{i}_voltage_{word}")
        for i, level in enumerate(self.temps, start=1):
            if (word := _level_word(level)) is not None:
                out.append(f"temp{i}_{word}")
        for name, level in (
            ("charge_current", self.charge_current),
            ("module_voltage", self.module_voltage),
            ("discharge_current", self.discharge_current),
        ):
            if (word := _level_word(level)) is not None:
                out.append(f"{name}_{word}")
        for bit, name in STATUS1_BITS.items():
            if self.status[0] & (1 << bit):
                out.append(name)
        for byte_index, first_cell in ((3, 1), (4, 9)):
            for bit in range(8):
                if self.status[byte_index] & (1 << bit):
                    out.append(f"cell{first_cell + bit}_failure")
        return tuple(out)

    def _encode(self, w: _Writer) -> None:
        w.count("cells", self.cells)
        for i, level in enumerate(self.cells):
            w.u8(f"cell[{i}]", level)
        w.count("temps", self.temps)
        for i, level in enumerate(self.temps):
            w.u8(f"temp[{i}]", level)
        w.u8("charge_current", self.charge_current)
        w.u8("module_voltage", self.module_voltage)
        w.u8("discharge_current", self.discharge_current)
        if len(self.status) != 5:
            raise EncodeError(f"{w.what}.status", self.status, "must hold 5 status bytes")
        for i, byte in enumerate(self.status, start=1):
            w.u8(f"status{i}", byte)

    @classmethod
    def _decode(cls, r: _Reader) -> ModuleAlarms:
        cells = _repeat(r.u8("cells count"), lambda i: r.u8(f"cell[{i}]"))
        temps = _repeat(r.u8("temps count"), lambda i: r.u8(f"temp[{i}]"))
        charge = r.u8("charge_current")
        volt = r.u8("module_voltage")
        discharge = r.u8("discharge_current")
        s = tuple(r.u8(f"status{i}") for i in range(1, 6))
        return cls(cells, temps, charge, volt, discharge, (s[0], s[1], s[2], s[3], s[4]))


@dataclass(frozen=True, slots=True)
class AlarmResponse:
    modules: tuple[ModuleAlarms, ...]
    command: int
    all_modules: bool = False
    info_flag: int = 0

    def encode(self) -> bytes:
        return _encode_modules("alarm", self.info_flag, self.command, self.modules, self.all_modules)

    @classmethod
    def decode(cls, info: bytes, *, all_modules: bool = False) -> AlarmResponse:
        flag, command, modules = _decode_modules(info, "alarm", all_modules, ModuleAlarms._decode)
        return cls(modules, command, all_modules, flag)


# --- 0x47 system parameters -------------------------------------------------------------------

# (field name, signed): the order on the wire after INFOFLAG.
_SYSTEM_FIELDS: tuple[tuple[str, bool], ...] = (
    ("cell_high_mv", False),
    ("cell_low_mv", False),
    ("cell_under_mv", False),
    ("charge_high_temp_dk", True),
    ("charge_low_temp_dk", True),
    ("charge_current_limit_da", True),
    ("module_high_mv", False),
    ("module_low_mv", False),
    ("module_under_mv", False),
    ("discharge_high_temp_dk", True),
    ("discharge_low_temp_dk", True),
    ("discharge_current_limit_da", True),
)


@dataclass(frozen=True, slots=True)
class SystemParameters:
    cell_high_mv: int
    cell_low_mv: int
    cell_under_mv: int
    charge_high_temp_dk: int
    charge_low_temp_dk: int
    charge_current_limit_da: int
    module_high_mv: int
    module_low_mv: int
    module_under_mv: int
    discharge_high_temp_dk: int
    discharge_low_temp_dk: int
    discharge_current_limit_da: int
    info_flag: int = 0

    @property
    def charge_current_limit_a(self) -> float:
        return self.charge_current_limit_da / 10.0

    @property
    def discharge_current_limit_a(self) -> float:
        return self.discharge_current_limit_da / 10.0

    @property
    def charge_temp_range_c(self) -> tuple[float, float]:
        return dk_to_c(self.charge_low_temp_dk), dk_to_c(self.charge_high_temp_dk)

    @property
    def discharge_temp_range_c(self) -> tuple[float, float]:
        return dk_to_c(self.discharge_low_temp_dk), dk_to_c(self.discharge_high_temp_dk)

    def encode(self) -> bytes:
        w = _Writer("system_parameters")
        w.u8("info_flag", self.info_flag)
        for name, signed in _SYSTEM_FIELDS:
            (w.s16 if signed else w.u16)(name, getattr(self, name))
        return bytes(w.out)

    @classmethod
    def decode(cls, info: bytes) -> SystemParameters:
        r = _Reader(info, "system_parameters")
        flag = r.u8("info_flag")
        values = {name: (r.s16 if signed else r.u16)(name) for name, signed in _SYSTEM_FIELDS}
        r.end()
        return cls(**values, info_flag=flag)


# --- 0x92 charge/discharge management ---------------------------------------------------------

CHARGE_ENABLE = 0x80
DISCHARGE_ENABLE = 0x40
CHARGE_IMMEDIATELY_1 = 0x20
CHARGE_IMMEDIATELY_2 = 0x10
FULL_CHARGE_REQUEST = 0x08


@dataclass(frozen=True, slots=True)
class ChargeDischarge:
    """0x92: what the BMS allows now. Currents are magnitudes in 0.1 A."""

    command: int
    charge_voltage_mv: int
    discharge_voltage_mv: int
    charge_current_da: int
    discharge_current_da: int
    status: int = CHARGE_ENABLE | DISCHARGE_ENABLE

    @property
    def charge_enabled(self) -> bool:
        return bool(self.status & CHARGE_ENABLE)

    @property
    def discharge_enabled(self) -> bool:
        return bool(self.status & DISCHARGE_ENABLE)

    @property
    def force_charge(self) -> bool:
        return bool(self.status & (CHARGE_IMMEDIATELY_1 | CHARGE_IMMEDIATELY_2 | FULL_CHARGE_REQUEST))

    def encode(self) -> bytes:
        w = _Writer("charge_discharge")
        w.u8("command", self.command)
        w.u16("charge_voltage", self.charge_voltage_mv)
        w.u16("discharge_voltage", self.discharge_voltage_mv)
        w.s16("charge_current", self.charge_current_da)
        w.s16("discharge_current", self.discharge_current_da)
        w.u8("status", self.status)
        return bytes(w.out)

    @classmethod
    def decode(cls, info: bytes) -> ChargeDischarge:
        r = _Reader(info, "charge_discharge")
        out = cls(
            command=r.u8("command"),
            charge_voltage_mv=r.u16("charge_voltage"),
            discharge_voltage_mv=r.u16("discharge_voltage"),
            charge_current_da=r.s16("charge_current"),
            discharge_current_da=r.s16("discharge_current"),
            status=r.u8("status"),
        )
        r.end()
        return out


# --- 0x51 manufacturer info, 0x93 serial number -----------------------------------------------


@dataclass(frozen=True, slots=True)
class ManufacturerInfo:
    device_name: str
    software_version: tuple[int, int]
    manufacturer: str

    def encode(self) -> bytes:
        w = _Writer("manufacturer_info")
        w.ascii("device_name", self.device_name, 10)
        w.u8("software_version[0]", self.software_version[0])
        w.u8("software_version[1]", self.software_version[1])
        w.ascii("manufacturer", self.manufacturer, 20)
        return bytes(w.out)

    @classmethod
    def decode(cls, info: bytes) -> ManufacturerInfo:
        r = _Reader(info, "manufacturer_info")
        name = r.ascii("device_name", 10)
        version = (r.u8("software_version[0]"), r.u8("software_version[1]"))
        start = r.pos
        rest = r.rest()
        # Clients differ on this field's length (20 bytes per the document; some read to the end).
        try:
            manufacturer = rest.decode("ascii").rstrip("\x00 ")
        except UnicodeDecodeError:
            raise PylontechDecodeError("manufacturer_info.manufacturer", start, r.data, "is not ASCII text") from None
        return cls(name, version, manufacturer)


@dataclass(frozen=True, slots=True)
class SerialNumber:
    command: int
    serial: str

    def encode(self) -> bytes:
        w = _Writer("serial_number")
        w.u8("command", self.command)
        w.ascii("serial", self.serial, 16)
        return bytes(w.out)

    @classmethod
    def decode(cls, info: bytes) -> SerialNumber:
        r = _Reader(info, "serial_number")
        out = cls(r.u8("command"), r.ascii("serial", 16))
        r.end()
        return out
