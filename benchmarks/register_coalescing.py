"""Transactions per poll cycle (coalesced vs one read per point) and decode CPU per 1,000 polls.

Prints one JSON object. Run: ``.venv/bin/python benchmarks/register_coalescing.py [--polls N]``.
Decode time is process CPU time for decoding every block of a full poll, measured in-process on
registers encoded from representative values, so it excludes I/O.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from shared.registers import available_maps, decode, encode, load_map, naive_reads, plan_reads
from shared.registers.model import DataType, Point, RegisterMap, type_range


def _sample(point: Point) -> object:
    if point.type is DataType.ENUM:
        assert point.enum is not None
        return next(iter(point.enum.values()))
    if point.type is DataType.BITFIELD:
        return ()
    if point.type is DataType.STRING:
        return "X" * point.register_count
    lo, hi = type_range(point)
    lo, hi = max(lo, -1000.0), min(hi, 1000.0)
    return (lo + hi) / 2 * point.scale * point.sign


def measure(regmap: RegisterMap, polls: int) -> dict[str, object]:
    points = regmap.readable_points()
    image = encode(regmap, {p.field: _sample(p) for p in points})
    blocks = plan_reads(regmap)
    regs = [[image.get(b.function, {}).get(a, 0) for a in range(b.address, b.end)] for b in blocks]
    groups = {
        name: {
            "interval_s": group.interval_s,
            "coalesced": len(plan_reads(regmap, regmap.readable_points({name}))),
        }
        for name, group in regmap.groups.items()
        if regmap.readable_points({name})
    }
    start = time.process_time()
    for _ in range(polls):
        for block, block_regs in zip(blocks, regs, strict=True):
            decode(regmap, block, block_regs)
    cpu = time.process_time() - start
    return {
        "points": len(points),
        "transactions_coalesced": len(blocks),
        "transactions_one_per_point": len(naive_reads(regmap)),
        "registers_read_coalesced": sum(b.count for b in blocks),
        "per_group": groups,
        "decode_cpu_s_per_1000_polls": round(cpu * 1000 / polls, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--polls", type=int, default=2000)
    args = parser.parse_args()
    result = {
        "benchmark": "register_coalescing",
        "python": platform.python_version(),
        "polls": args.polls,
        "maps": {name: measure(load_map(name), args.polls) for name in available_maps()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
