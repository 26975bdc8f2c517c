"""Benchmark: one simulated year of the seed house at 1-minute steps, no services attached.

Prints JSON: wall seconds for precomputing PV/demand and for stepping, and the year's energy figures.
Usage: .venv/bin/python benchmarks/sim_year.py [--config deploy/scenarios/seed-house.yaml] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from services.simulator.physics.house import House
from services.simulator.scenario import house_params
from shared.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="deploy/scenarios/seed-house.yaml")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--year", type=int, default=2026)
    args = parser.parse_args()
    cfg = load_config(args.config)
    if cfg.simulator is None:
        raise SystemExit(f"{args.config} has no simulator section")
    params = house_params(cfg.simulator, seed=args.seed, chunk_days=366)
    zone = ZoneInfo(cfg.simulator.location.timezone)
    start = datetime(args.year, 1, 1, tzinfo=zone)
    steps = int((datetime(args.year + 1, 1, 1, tzinfo=zone) - start).total_seconds() // 60)

    t0 = time.perf_counter()
    house = House(params, start)
    t1 = time.perf_counter()
    for _ in range(steps):
        house.step(60.0)
    t2 = time.perf_counter()
    t = house.totals
    print(
        json.dumps(
            {
                "benchmark": "sim_year",
                "steps": steps,
                "step_s": 60,
                "precompute_s": round(t1 - t0, 2),
                "stepping_s": round(t2 - t1, 2),
                "total_s": round(t2 - t0, 2),
                "us_per_step": round((t2 - t1) / steps * 1e6, 2),
                "pv_kwh": round(t.pv_wh / 1000, 1),
                "load_kwh": round(t.load_wh / 1000, 1),
                "import_kwh": round(t.import_wh / 1000, 1),
                "export_kwh": round(t.export_wh / 1000, 1),
                "battery_charge_kwh": round(t.charge_wh / 1000, 1),
                "battery_discharge_kwh": round(t.discharge_wh / 1000, 1),
                "self_sufficiency_pct": round(100 * (1 - t.import_wh / t.load_wh), 1),
                "battery_cycles": round(house.battery.cycles, 1),
                "seed": params.seed,
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
