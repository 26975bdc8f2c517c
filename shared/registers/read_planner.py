"""Coalesce points into the fewest Modbus read transactions a device accepts.

Per function code, points are sorted by address and grown greedily into blocks. A block may read
through an unused gap of up to ``max_gap`` registers, never through a forbidden address, never
past ``max_read_registers``, and on Eastron meters starts on an even address with an even count.
Each constraint only gets easier on a shorter run of points, so extending greedily is optimal:
no other split of the sorted points needs fewer transactions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .model import Point, RegisterMap


class ReadPlanError(ValueError):
    """Points that no sequence of legal reads can cover."""


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read transaction: ``count`` registers from ``address`` under ``function``."""

    function: int
    address: int
    count: int
    points: tuple[Point, ...]

    @property
    def end(self) -> int:
        return self.address + self.count

    def __repr__(self) -> str:
        fields = ",".join(p.field for p in self.points)
        return f"ReadBlock(FC{self.function} 0x{self.address:04X}+{self.count}: {fields})"


def _span(regmap: RegisterMap, start: int, end: int) -> tuple[int, int]:
    """The registers actually read for [start, end), after the even-address rule."""
    if regmap.even_alignment:
        start &= ~1
        end += end & 1
    return start, end


def _clear(regmap: RegisterMap, function: int, start: int, end: int) -> bool:
    return not any(bad.overlaps(function, start, end) for bad in regmap.forbidden)


def plan_reads(regmap: RegisterMap, points: Iterable[Point] | None = None) -> list[ReadBlock]:
    """The read blocks covering ``points`` (default: every readable point of the map)."""
    chosen = regmap.readable_points() if points is None else tuple(points)
    blocks: list[ReadBlock] = []
    for function in sorted({p.function for p in chosen}):
        ordered = sorted((p for p in chosen if p.function == function), key=lambda p: (p.address, p.end))
        current: list[Point] = []
        start = end = 0
        for point in ordered:
            if not point.readable:
                raise ReadPlanError(f"{point.field} is write-only and cannot be read")
            if current:
                new_end = max(end, point.end)
                lo, hi = _span(regmap, start, new_end)
                fits = (
                    point.address - end <= regmap.max_gap
                    and hi - lo <= regmap.max_read_registers
                    and _clear(regmap, function, lo, hi)
                )
                if fits:
                    current.append(point)
                    end = new_end
                    continue
                blocks.append(_block(regmap, function, start, end, current))
            lo, hi = _span(regmap, point.address, point.end)
            if hi - lo > regmap.max_read_registers or not _clear(regmap, function, lo, hi):
                raise ReadPlanError(
                    f"{point.field} @0x{point.address:04X} cannot be read on its own within the map's limits"
                )
            current, start, end = [point], point.address, point.end
        if current:
            blocks.append(_block(regmap, function, start, end, current))
    return blocks


def _block(regmap: RegisterMap, function: int, start: int, end: int, points: list[Point]) -> ReadBlock:
    lo, hi = _span(regmap, start, end)
    return ReadBlock(function=function, address=lo, count=hi - lo, points=tuple(points))


def naive_reads(regmap: RegisterMap, points: Iterable[Point] | None = None) -> list[ReadBlock]:
    """One read per point: what a register-by-register poller does (the benchmark's baseline)."""
    chosen = regmap.readable_points() if points is None else tuple(points)
    out = []
    for point in chosen:
        lo, hi = _span(regmap, point.address, point.end)
        out.append(ReadBlock(function=point.function, address=lo, count=hi - lo, points=(point,)))
    return out
