"""Registers <-> values, both directions, for one point or a whole read block.

The bridges decode what they read; the simulator encodes its physical state into the same map, so
a map is exercised from both sides and any disagreement shows up as a failed round trip.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .model import Access, DataType, Point, RegisterMap, WordOrder, type_range
from .read_planner import ReadBlock

Value = int | float | str | tuple[str, ...]
RegisterImage = dict[int, dict[int, int]]
"""``{function_code: {address: register}}``: FC3 and FC4 are separate address spaces."""


class RegisterError(ValueError):
    """Base of decode/encode failures; the message names the field and address."""

    def __init__(self, message: str, *, field: str, address: int) -> None:
        super().__init__(message)
        self.field = field
        self.address = address


class RegisterDecodeError(RegisterError):
    """Registers that cannot be a valid value for the field (out of range, NaN, unknown code)."""

    def __init__(self, point: Point, raw: object, reason: str) -> None:
        super().__init__(
            f"{point.field} @0x{point.address:04X} (FC{point.function}, {point.vendor_name}): "
            f"raw value {raw!r} {reason}",
            field=point.field,
            address=point.address,
        )
        self.raw = raw


class EncodeError(RegisterError):
    """A value that the field cannot carry (out of bounds, unknown enum name, too long)."""

    def __init__(self, point: Point, value: object, reason: str) -> None:
        super().__init__(
            f"{point.field} @0x{point.address:04X}: cannot encode {value!r}: {reason}",
            field=point.field,
            address=point.address,
        )
        self.value = value


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """What to send to write one point: function code, first register, register values."""

    field: str
    function: int
    address: int
    registers: tuple[int, ...]


# --------------------------------------------------------------------------- scale helpers


def _inverse(scale: float) -> int | None:
    """1/scale when it is a whole number, so 0.1 divides by 10 instead of multiplying by 0.1."""
    if scale >= 1:
        return None
    inv = 1.0 / scale
    return round(inv) if abs(inv - round(inv)) < 1e-9 else None


def _to_value(raw: float, point: Point) -> int | float:
    inv = _inverse(point.scale)
    if point.type is DataType.F32:
        return raw / inv * point.sign if inv else raw * point.scale * point.sign
    raw_int = int(raw)
    if inv:
        return raw_int / inv * point.sign
    if point.scale.is_integer():
        return raw_int * int(point.scale) * point.sign
    return raw_int * point.scale * point.sign


def _to_raw(value: float, point: Point) -> float:
    inv = _inverse(point.scale)
    unsigned = value * point.sign
    return unsigned * inv if inv else unsigned / point.scale


# --------------------------------------------------------------------------- one point


def _words_to_int(regs: Sequence[int], order: WordOrder) -> int:
    hi, lo = (regs[0], regs[1]) if order is WordOrder.BIG else (regs[1], regs[0])
    return (hi << 16) | lo


def _int_to_words(value: int, order: WordOrder) -> list[int]:
    hi, lo = (value >> 16) & 0xFFFF, value & 0xFFFF
    return [hi, lo] if order is WordOrder.BIG else [lo, hi]


def _raw_from_registers(regmap: RegisterMap, point: Point, regs: Sequence[int]) -> float:
    kind = point.type
    if kind in (DataType.U16, DataType.ENUM, DataType.BITFIELD):
        return regs[0]
    if kind is DataType.S16:
        return regs[0] - 0x10000 if regs[0] & 0x8000 else regs[0]
    combined = _words_to_int(regs, regmap.word_order_of(point))
    if kind is DataType.U32:
        return combined
    if kind is DataType.S32:
        return combined - 0x1_0000_0000 if combined & 0x8000_0000 else combined
    if kind is DataType.F32:
        number: float = struct.unpack(">f", combined.to_bytes(4, "big"))[0]
        return number
    raise AssertionError(kind)  # strings never reach here


def decode_point(regmap: RegisterMap, point: Point, regs: Sequence[int]) -> Value:
    """One point's value from exactly ``point.register_count`` registers."""
    if len(regs) != point.register_count:
        raise RegisterDecodeError(point, list(regs), f"has {len(regs)} registers, expected {point.register_count}")
    for reg in regs:
        if not 0 <= reg <= 0xFFFF:
            raise RegisterDecodeError(point, reg, "is not a 16-bit register")
    if point.type is DataType.STRING:
        data = b"".join(reg.to_bytes(2, "big") for reg in regs)
        try:
            return data.decode("ascii").strip("\x00 ")
        except UnicodeDecodeError:
            raise RegisterDecodeError(point, data.hex(" "), "is not ASCII text") from None
    raw = _raw_from_registers(regmap, point, regs)
    if point.type is DataType.F32 and not math.isfinite(raw):
        raise RegisterDecodeError(point, raw, "is not a finite number")
    lo, hi = type_range(point)
    if not lo <= raw <= hi:
        raise RegisterDecodeError(point, raw, f"is outside the declared range [{lo:g}, {hi:g}]")
    if point.type is DataType.ENUM:
        assert point.enum is not None
        name = point.enum.get(int(raw))
        if name is None:
            raise RegisterDecodeError(point, int(raw), f"is not one of the known codes {sorted(point.enum)}")
        return name
    if point.type is DataType.BITFIELD:
        assert point.bits is not None
        # An undocumented bit is reported by position, never dropped: it may be a real fault.
        return tuple(
            point.bits.get(bit, f"{point.field}_bit{bit}") for bit in range(16) if int(raw) >> bit & 1
        )
    return _to_value(raw, point)


def _bit_of(point: Point, name: str) -> int:
    assert point.bits is not None
    for bit, known in point.bits.items():
        if known == name:
            return bit
    prefix = f"{point.field}_bit"
    if name.startswith(prefix) and name[len(prefix) :].isdigit() and int(name[len(prefix) :]) < 16:
        return int(name[len(prefix) :])
    raise EncodeError(point, name, f"is not a bit of this field (bits: {sorted(point.bits.values())})")


def encode_point(regmap: RegisterMap, point: Point, value: Value) -> list[int]:
    """The registers that decode back to ``value`` (numbers are rounded to the register's step)."""
    kind = point.type
    if kind is DataType.STRING:
        if not isinstance(value, str):
            raise EncodeError(point, value, "a string field needs a str")
        try:
            data = value.encode("ascii")
        except UnicodeEncodeError:
            raise EncodeError(point, value, "is not ASCII") from None
        if len(data) > 2 * point.register_count:
            raise EncodeError(point, value, f"longer than {2 * point.register_count} characters")
        data = data.ljust(2 * point.register_count, b"\x00")
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if kind is DataType.ENUM:
        assert point.enum is not None
        codes = {name: code for code, name in point.enum.items()}
        if isinstance(value, str):
            if value not in codes:
                raise EncodeError(point, value, f"is not one of {sorted(codes)}")
            return [codes[value]]
        raise EncodeError(point, value, "an enum field needs its name")
    if kind is DataType.BITFIELD:
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise EncodeError(point, value, "a bitfield needs a sequence of bit names")
        mask = 0
        for name in value:
            mask |= 1 << _bit_of(point, str(name))
        return [mask]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EncodeError(point, value, f"a {kind} field needs a number")
    if not math.isfinite(value):
        raise EncodeError(point, value, "is not finite")
    raw = _to_raw(float(value), point)
    lo, hi = type_range(point)
    if kind is DataType.F32:
        if not lo <= raw <= hi:
            raise EncodeError(point, value, f"raw {raw:g} outside the declared range [{lo:g}, {hi:g}]")
        try:
            packed = struct.pack(">f", raw)
        except OverflowError:
            raise EncodeError(point, value, "does not fit a float32") from None
        return _int_to_words(int.from_bytes(packed, "big"), regmap.word_order_of(point))
    raw_int = round(raw)
    if not lo <= raw_int <= hi:
        raise EncodeError(point, value, f"raw {raw_int} outside the range [{lo:g}, {hi:g}]")
    if kind is DataType.U16:
        return [raw_int]
    if kind is DataType.S16:
        return [raw_int & 0xFFFF]
    return _int_to_words(raw_int & 0xFFFF_FFFF, regmap.word_order_of(point))


# --------------------------------------------------------------------------- blocks and images


def decode(regmap: RegisterMap, block: ReadBlock, registers: Sequence[int]) -> dict[str, Value]:
    """Every point of one read block from the registers that read returned."""
    if len(registers) != block.count:
        raise RegisterError(
            f"read of FC{block.function} 0x{block.address:04X}+{block.count} returned "
            f"{len(registers)} registers",
            field=block.points[0].field if block.points else "",
            address=block.address,
        )
    values: dict[str, Value] = {}
    for point in block.points:
        offset = point.address - block.address
        values[point.field] = decode_point(regmap, point, registers[offset : offset + point.register_count])
    return values


def encode(regmap: RegisterMap, values: Mapping[str, Value], *, strict: bool = True) -> RegisterImage:
    """Registers for every given field: ``{function: {address: register}}``.

    With ``strict`` an unknown field name is an error (a typo in the simulator must not pass).
    """
    image: RegisterImage = {}
    for field, value in values.items():
        try:
            point = regmap.point(field)
        except KeyError:
            if strict:
                raise
            continue
        if not point.readable:
            continue
        regs = encode_point(regmap, point, value)
        space = image.setdefault(point.function, {})
        for i, reg in enumerate(regs):
            space[point.address + i] = reg
    return image


def decode_image(
    regmap: RegisterMap, image: Mapping[int, Mapping[int, int]], points: Iterable[Point] | None = None
) -> dict[str, Value]:
    """Decode points straight from a register image (the simulator's side, and golden tests)."""
    values: dict[str, Value] = {}
    for point in regmap.readable_points() if points is None else points:
        space = image.get(point.function, {})
        try:
            regs = [space[point.address + i] for i in range(point.register_count)]
        except KeyError as missing:
            raise RegisterDecodeError(point, None, f"register {missing} is missing from the image") from None
        values[point.field] = decode_point(regmap, point, regs)
    return values


def encode_write(regmap: RegisterMap, field: str, value: float | int | str | None = None) -> WriteRequest:
    """A write of ``value`` to a writable point, checked against its bounds."""
    point = regmap.point(field)
    if point.access is Access.READ:
        raise EncodeError(point, value, "the point is read-only")
    assert point.write_function is not None
    if point.write_constant is not None:
        if value is not None and value != point.write_constant:
            raise EncodeError(point, value, f"this command register only takes 0x{point.write_constant:04X}")
        return WriteRequest(field, point.write_function, point.address, (point.write_constant,))
    if value is None:
        raise EncodeError(point, value, "a value is required")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if point.write_min is not None and value < point.write_min:
            raise EncodeError(point, value, f"below the writable minimum {point.write_min:g} {point.unit}")
        if point.write_max is not None and value > point.write_max:
            raise EncodeError(point, value, f"above the writable maximum {point.write_max:g} {point.unit}")
    return WriteRequest(field, point.write_function, point.address, tuple(encode_point(regmap, point, value)))
