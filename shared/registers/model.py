"""A device's register map as validated data.

A map is loaded from YAML (``shared/registers/maps/<name>.yaml``) into these frozen pydantic models.
Everything the engine needs to plan reads, decode, encode and bound writes lives here; nothing
device-specific lives in code.

Value pipeline, in one place so both directions agree::

    registers --(type, word_order)--> raw --(range check)--> raw * scale * sign --> value

``raw`` is the integer (or float32) the device sends; ``value`` is in the point's ``unit`` and in
the project's sign convention (power into the house AC bus is ``+``).
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Address = Annotated[int, Field(ge=0, le=0xFFFF)]
FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class DataType(StrEnum):
    U16 = "u16"
    S16 = "s16"
    U32 = "u32"
    S32 = "s32"
    F32 = "f32"
    STRING = "string"
    ENUM = "enum"
    BITFIELD = "bitfield"


class WordOrder(StrEnum):
    BIG = "big"  # high word at the lower address (Sofar, Eastron)
    LITTLE = "little"  # low word first (some SunSpec-less Chinese devices)


class Access(StrEnum):
    READ = "r"
    READ_WRITE = "rw"
    WRITE = "w"  # write-only: command registers such as Sofar's passive-mode 0x42 targets


_TYPE_RANGE: dict[DataType, tuple[int, int]] = {
    DataType.U16: (0, 0xFFFF),
    DataType.S16: (-0x8000, 0x7FFF),
    DataType.U32: (0, 0xFFFFFFFF),
    DataType.S32: (-0x80000000, 0x7FFFFFFF),
    DataType.ENUM: (0, 0xFFFF),
    DataType.BITFIELD: (0, 0xFFFF),
}


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AddressRange(_Data):
    """An inclusive span of register addresses under one function code."""

    function: Literal[3, 4]
    start: Address
    end: Address
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end < self.start:
            raise ValueError(f"range end 0x{self.end:04X} is before start 0x{self.start:04X}")
        return self

    def overlaps(self, function: int, start: int, end_exclusive: int) -> bool:
        return function == self.function and start <= self.end and self.start < end_exclusive


class PollGroup(_Data):
    interval_s: Annotated[float, Field(gt=0, le=86_400)]
    description: str = ""


class Point(_Data):
    """One value on the device: where it is, how it is encoded, what it means."""

    field: FieldName = Field(description="Decoded name; matches shared/messages.py fields where one exists.")
    address: Address
    function: Literal[3, 4] = Field(3, description="3: holding registers, 4: input registers.")
    type: DataType
    words: Annotated[int, Field(ge=1, le=64)] | None = Field(
        None, description="Register count; strings only."
    )
    word_order: WordOrder | None = Field(None, description="32-bit types; default from the map.")
    scale: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        1.0, description="value = raw * scale * sign, so 0.01 kW -> W is 10."
    )
    sign: Literal[1, -1] = Field(1, description="-1 when the vendor's sign is the opposite of ours.")
    unit: str = ""
    group: str = Field("default", description="Poll group; its interval is declared on the map.")
    vendor_name: str = Field(description="The register's name in the vendor document.")
    description: str = ""
    range: tuple[float, float] | None = Field(
        None, description="Valid raw values (before scale); outside is a decoding error."
    )
    enum: dict[int, str] | None = None
    bits: dict[Annotated[int, Field(ge=0, le=15)], str] | None = None
    collect: str | None = Field(None, description="Bitfields whose set-bit names merge into one list.")
    access: Access = Access.READ
    write_function: Literal[6, 16, 0x42, 0x49] | None = Field(None, description="6, 16, or Sofar 0x42/0x49.")
    write_min: float | None = Field(None, description="Lowest value (in unit) a write may carry.")
    write_max: float | None = None
    write_constant: int | None = Field(None, description="Raw value a command register always receives.")

    @field_validator("range")
    @classmethod
    def _range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError(f"range {list(value)} has min above max")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        where = f"{self.field} @0x{self.address:04X}"
        if self.type is DataType.STRING:
            if self.words is None:
                raise ValueError(f"{where}: a string needs 'words'")
        elif self.words is not None:
            raise ValueError(f"{where}: 'words' is only for strings (type {self.type})")
        if (self.type is DataType.ENUM) != (self.enum is not None):
            raise ValueError(f"{where}: 'enum' table goes with type enum and only with it")
        if (self.type is DataType.BITFIELD) != (self.bits is not None):
            raise ValueError(f"{where}: 'bits' table goes with type bitfield and only with it")
        if self.collect is not None and self.type is not DataType.BITFIELD:
            raise ValueError(f"{where}: 'collect' is for bitfields")
        if self.type in (DataType.STRING, DataType.ENUM, DataType.BITFIELD) and (
            self.scale != 1 or self.sign != 1
        ):
            raise ValueError(f"{where}: scale/sign make no sense on a {self.type}")
        if self.range is not None and self.type in _TYPE_RANGE:
            lo, hi = _TYPE_RANGE[self.type]
            if self.range[0] < lo or self.range[1] > hi:
                raise ValueError(f"{where}: range {list(self.range)} exceeds what a {self.type} can hold")
        writes = self.access is not Access.READ
        if writes and self.write_function is None:
            raise ValueError(f"{where}: a writable point needs write_function")
        if not writes and (self.write_function, self.write_min, self.write_max) != (None, None, None):
            raise ValueError(f"{where}: write_* keys on a read-only point")
        if self.write_function == 6 and self.register_count != 1:
            raise ValueError(f"{where}: FC6 writes one register, {self.type} needs {self.register_count}")
        if self.write_min is not None and self.write_max is not None and self.write_min > self.write_max:
            raise ValueError(f"{where}: write_min {self.write_min} above write_max {self.write_max}")
        if self.address + self.register_count - 1 > 0xFFFF:
            raise ValueError(f"{where}: runs past register 0xFFFF")
        return self

    @property
    def register_count(self) -> int:
        if self.type is DataType.STRING:
            assert self.words is not None
            return self.words
        if self.type in (DataType.U32, DataType.S32, DataType.F32):
            return 2
        return 1

    @property
    def end(self) -> int:
        """First address after this point."""
        return self.address + self.register_count

    @property
    def readable(self) -> bool:
        return self.access is not Access.WRITE


class RegisterMap(_Data):
    """A device model: map-level rules plus its points."""

    name: FieldName
    manufacturer: str
    models: tuple[str, ...] = Field(description="Device models this map is for.")
    kind: Literal["inverter", "meter"]
    tested_on_hardware: bool
    sources: tuple[str, ...] = Field(description="Where the addresses come from, vendor document first.")
    notes: str = ""
    default_unit: Annotated[int, Field(ge=0, le=247)] = 1
    default_baudrate: int = 9600
    word_order: WordOrder = WordOrder.BIG
    max_read_registers: Annotated[int, Field(ge=1, le=125)] = Field(
        description="Largest read the device answers (Modbus allows 125)."
    )
    max_gap: Annotated[int, Field(ge=0, le=125)] = Field(
        8, description="Unused registers the planner may read through to save a transaction."
    )
    even_alignment: bool = Field(False, description="Reads must start on an even address with an even count.")
    forbidden: tuple[AddressRange, ...] = Field((), description="Addresses the device refuses to be read.")
    groups: dict[str, PollGroup] = Field(default_factory=lambda: {"default": PollGroup(interval_s=5)})
    points: tuple[Point, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        seen: set[str] = set()
        for point in self.points:
            if point.field in seen:
                raise ValueError(f"field {point.field!r} is declared twice")
            seen.add(point.field)
            if point.group not in self.groups:
                raise ValueError(f"{point.field}: poll group {point.group!r} is not declared in 'groups'")
            if not point.readable:
                continue
            if point.register_count > self.max_read_registers:
                raise ValueError(
                    f"{point.field}: {point.register_count} registers exceed max_read_registers "
                    f"{self.max_read_registers}"
                )
            for bad in self.forbidden:
                if bad.overlaps(point.function, point.address, point.end):
                    raise ValueError(
                        f"{point.field} @0x{point.address:04X} lies in a forbidden range "
                        f"0x{bad.start:04X}-0x{bad.end:04X}"
                    )
            if self.even_alignment:
                start, end = point.address & ~1, point.end + (point.end & 1)
                for bad in self.forbidden:
                    if bad.overlaps(point.function, start, end):
                        raise ValueError(
                            f"{point.field}: even-aligned read 0x{start:04X}+{end - start} "
                            "touches a forbidden range"
                        )
                if end - start > self.max_read_registers:
                    raise ValueError(f"{point.field}: even-aligned read exceeds max_read_registers")
        return self

    def point(self, field: str) -> Point:
        for point in self.points:
            if point.field == field:
                return point
        raise KeyError(f"map {self.name} has no field {field!r}")

    def readable_points(self, groups: set[str] | frozenset[str] | None = None) -> tuple[Point, ...]:
        """Points to poll, optionally only those in the named poll groups."""
        if groups is not None:
            unknown = set(groups) - set(self.groups)
            if unknown:
                raise KeyError(f"map {self.name} has no poll group(s) {sorted(unknown)}")
        return tuple(p for p in self.points if p.readable and (groups is None or p.group in groups))

    def word_order_of(self, point: Point) -> WordOrder:
        return point.word_order or self.word_order

    def is_forbidden(self, function: int, address: int) -> bool:
        return any(bad.overlaps(function, address, address + 1) for bad in self.forbidden)


def type_range(point: Point) -> tuple[float, float]:
    """The raw range a point accepts: its declared ``range``, else what its type can hold."""
    if point.range is not None:
        return point.range
    if point.type is DataType.F32:
        return (-math.inf, math.inf)
    return _TYPE_RANGE.get(point.type, (0, 0xFFFF))
