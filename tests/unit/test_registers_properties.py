"""Hypothesis properties: every map round-trips registers, and read plans are legal and minimal."""

from __future__ import annotations

import math
import struct
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.registers import (
    AddressRange,
    DataType,
    Point,
    RegisterMap,
    available_maps,
    decode,
    decode_point,
    encode,
    encode_point,
    load_map,
    plan_reads,
)
from shared.registers.model import type_range


def _registers_for(point: Point, order_big: bool) -> st.SearchStrategy[list[int]]:
    """Registers of a valid raw value, packed here independently of the codec under test."""
    lo, hi = type_range(point)

    def words(value: int) -> list[int]:
        hi_w, lo_w = value >> 16 & 0xFFFF, value & 0xFFFF
        return [hi_w, lo_w] if order_big else [lo_w, hi_w]

    kind = point.type
    if kind is DataType.STRING:
        text = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-", max_size=2 * point.register_count)
        return text.map(
            lambda s: [
                int.from_bytes(s.encode().ljust(2 * point.register_count, b"\0")[i : i + 2], "big")
                for i in range(0, 2 * point.register_count, 2)
            ]
        )
    if kind is DataType.ENUM:
        assert point.enum is not None
        return st.sampled_from(sorted(point.enum)).map(lambda c: [c])
    if kind is DataType.F32:
        floats = st.floats(min_value=lo, max_value=hi, width=32, allow_nan=False, allow_infinity=False)
        return floats.map(lambda f: words(int.from_bytes(struct.pack(">f", f), "big")))
    ints = st.integers(min_value=int(lo), max_value=int(hi))
    if kind in (DataType.U16, DataType.S16, DataType.BITFIELD):
        return ints.map(lambda v: [v & 0xFFFF])
    return ints.map(lambda v: words(v & 0xFFFF_FFFF))


@cache
def _map(name: str) -> RegisterMap:
    return load_map(name)


@st.composite
def map_and_image(draw: st.DrawFn) -> tuple[RegisterMap, dict[int, dict[int, int]]]:
    regmap = _map(draw(st.sampled_from(available_maps())))
    image: dict[int, dict[int, int]] = {}
    for point in regmap.readable_points():
        regs = draw(_registers_for(point, regmap.word_order_of(point).value == "big"))
        for i, reg in enumerate(regs):
            image.setdefault(point.function, {})[point.address + i] = reg
    return regmap, image


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(map_and_image())
def test_every_map_round_trips_registers(case: tuple[RegisterMap, dict[int, dict[int, int]]]) -> None:
    regmap, image = case
    values = {}
    for block in plan_reads(regmap):
        space = image[block.function]
        values.update(decode(regmap, block, [space.get(a, 0) for a in range(block.address, block.end)]))
    again = encode(regmap, values)
    for point in regmap.readable_points():
        original = [image[point.function][point.address + i] for i in range(point.register_count)]
        encoded = [again[point.function][point.address + i] for i in range(point.register_count)]
        if point.type is DataType.F32 and original != encoded:
            # Only a scaled float may come back one ulp off (x*1000/1000 in double, then to float32).
            assert math.isclose(decode_point(regmap, point, encoded), values[point.field], rel_tol=1e-6)
        else:
            assert encoded == original, point.field


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(available_maps()), st.data())
def test_encode_then_decode_returns_quantised_values(name: str, data: st.DataObject) -> None:
    regmap = _map(name)
    for point in regmap.readable_points():
        if point.type not in (DataType.U16, DataType.S16, DataType.U32, DataType.S32):
            continue
        lo, hi = type_range(point)
        # A physical value anywhere in the representable range decodes back within half a step.
        value = data.draw(st.floats(min_value=lo, max_value=hi)) * point.scale * point.sign
        regs = encode_point(regmap, point, value)
        assert abs(decode_point(regmap, point, regs) - value) <= point.scale / 2 + 1e-9 * max(1.0, abs(value))


# --------------------------------------------------------------------------- planner properties


@st.composite
def synthetic_maps(draw: st.DrawFn) -> RegisterMap:
    even = draw(st.booleans())
    max_read = draw(st.integers(min_value=4, max_value=40))
    max_gap = draw(st.integers(min_value=0, max_value=12))
    n = draw(st.integers(min_value=1, max_value=25))
    points: list[Point] = []
    used: set[tuple[int, int]] = set()
    for i in range(n):
        function = draw(st.sampled_from([3, 4]))
        kind = draw(st.sampled_from([DataType.U16, DataType.S16, DataType.U32, DataType.F32]))
        size = 1 if kind in (DataType.U16, DataType.S16) else 2
        address = draw(st.integers(min_value=0, max_value=200))
        if even:
            address &= ~1
        points.append(
            Point(field=f"p{i}", address=address, function=function, type=kind, vendor_name=f"P{i}")
        )
        used.update((function, a) for a in range(address, address + size))
    forbidden: list[AddressRange] = []
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        function = draw(st.sampled_from([3, 4]))
        start = draw(st.integers(min_value=0, max_value=210))
        if even:
            start &= ~1
        length = draw(st.integers(min_value=1, max_value=8))
        end = start + length - 1
        if even:
            end |= 1
        if not any((function, a) in used for a in range(start, end + 1)):
            forbidden.append(AddressRange(function=function, start=start, end=end))
    return RegisterMap(
        name="synthetic",
        manufacturer="t",
        models=("t",),
        kind="meter",
        tested_on_hardware=False,
        sources=("hypothesis",),
        max_read_registers=max_read,
        max_gap=max_gap,
        even_alignment=even,
        forbidden=tuple(forbidden),
        points=tuple(points),
    )


def _legal(regmap: RegisterMap, function: int, start: int, end: int, gaps: list[int]) -> bool:
    """An independent statement of the rules for one read covering [start, end)."""
    if regmap.even_alignment:
        start, end = start - start % 2, end + end % 2
    if end - start > regmap.max_read_registers or any(g > regmap.max_gap for g in gaps):
        return False
    return not any(r.function == function and r.start < end and start <= r.end for r in regmap.forbidden)


def _fewest_reads(regmap: RegisterMap) -> int:
    """Dynamic programme over the sorted points: the true minimum number of reads."""
    total = 0
    for function in (3, 4):
        pts = sorted((p for p in regmap.points if p.function == function), key=lambda p: (p.address, p.end))
        best = [0] + [math.inf] * len(pts)
        for j in range(1, len(pts) + 1):
            for i in range(j):
                run = pts[i:j]
                end, gaps = run[0].end, []
                for p in run[1:]:
                    gaps.append(p.address - end)
                    end = max(end, p.end)
                if _legal(regmap, function, run[0].address, end, gaps):
                    best[j] = min(best[j], best[i] + 1)
        total += int(best[-1])
    return total


@settings(max_examples=300, deadline=None)
@given(synthetic_maps())
def test_plan_covers_each_point_once_and_obeys_the_rules(regmap: RegisterMap) -> None:
    blocks = plan_reads(regmap)
    seen = [p.field for b in blocks for p in b.points]
    assert sorted(seen) == sorted(p.field for p in regmap.points)
    for block in blocks:
        assert 1 <= block.count <= regmap.max_read_registers
        for point in block.points:
            assert point.function == block.function
            assert block.address <= point.address and point.end <= block.end
        for address in range(block.address, block.end):
            assert not regmap.is_forbidden(block.function, address), (block, hex(address))
        if regmap.even_alignment:
            assert block.address % 2 == 0 and block.count % 2 == 0
    assert len(blocks) == _fewest_reads(regmap)


@pytest.mark.parametrize("name", available_maps())
def test_shipped_plans_beat_one_read_per_point(name: str) -> None:
    regmap = _map(name)
    assert len(plan_reads(regmap)) < len(regmap.readable_points())
    assert len(plan_reads(regmap)) == _fewest_reads(
        regmap.model_copy(update={"points": regmap.readable_points()})
    )
