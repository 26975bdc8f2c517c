"""Year backtest benchmark on the seed house: wall time at 30-minute and 1-minute data, and the
planner's cost against perfect foresight. Prints JSON. Takes minutes (planner re-solved every
30 min: ~17,500 plans per policy); ``--days N`` runs a shorter slice for a quick look.

The 1-minute year is made from the 30-minute file by holding each half-hour's mean and adding
seeded kettle-like spikes, so control runs each minute on spiky load while planning stays at 30 min.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from services.dispatcher.backtest.data import Series, read_series
from services.dispatcher.backtest.engine import Setup, simulate
from services.dispatcher.core.forecast import PvArray
from services.dispatcher.highs import silence_highs_banner
from shared.config.dispatcher import DispatcherConfig
from shared.config.tariff import TariffConfig
from shared.energy.battery import BatteryModel
from shared.energy.tariff import tariff_from_config

SEED = Path(__file__).parent.parent / "deploy/scenarios/seed-house-year.csv"


def minutely(series: Series, seed: int = 1) -> Series:
    rng = np.random.default_rng(seed)
    times = pd.date_range(series.times[0], periods=len(series.times) * 30, freq="1min")
    load = np.repeat(series.load_w, 30)
    spikes = np.where(rng.random(len(load)) < 0.02, 2500.0, 0.0)
    load = np.clip(load - spikes.mean() + spikes, 50.0, None)
    pv = np.repeat(series.pv_w, 30) * np.exp(rng.normal(0, 0.1, len(load)))
    return Series(times, load, pv, 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--export-price", type=float, default=0.05)
    parser.add_argument("--skip-minutely", action="store_true")
    args = parser.parse_args()
    full = read_series(SEED)
    rows = args.days * 48
    series = Series(full.times[:rows], full.load_w[:rows], full.pv_w[:rows], full.step_s)
    tariff_cfg = TariffConfig.model_validate(
        {
            "import": {
                "kind": "two_rate",
                "off_peak": {"start": "00:30", "end": "07:30", "price_per_kwh": 0.09},
                "peak_price_per_kwh": 0.30,
            },
            "export": {"kind": "flat", "price_per_kwh": args.export_price},
        }
    )
    setup = Setup(
        BatteryModel(capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000, reserve_pct=20, ceiling_pct=97),
        DispatcherConfig(pv_azimuth_deg=141),
        tariff_from_config(tariff_cfg),
        "Europe/London",
        PvArray(4.0, 30.0, 141.0, 53.6, -0.5),
    )
    out: dict[str, object] = {
        "benchmark": "backtest_year",
        "days": args.days,
        "export_price": args.export_price,
    }
    costs: dict[str, float] = {}
    for policy in ("none", "self_use", "planner", "perfect"):
        t = time.perf_counter()
        result = simulate(series, policy, setup)
        costs[policy] = result.cost
        out[f"wall_s_30min_{policy}"] = round(time.perf_counter() - t, 2)
        out[f"cost_{policy}"] = round(result.cost, 2)
    out["planner_over_perfect_pct"] = round((costs["planner"] - costs["perfect"]) / abs(costs["perfect"]) * 100, 2)
    if not args.skip_minutely:
        fine = minutely(series)
        t = time.perf_counter()
        result = simulate(fine, "planner", setup)
        out["wall_s_1min_planner"] = round(time.perf_counter() - t, 2)
        out["cost_1min_planner"] = round(result.cost, 2)
        out["export_by_cause_1min_kwh"] = {k: round(v, 1) for k, v in result.export_by_cause_kwh.items()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    silence_highs_banner()
    main()
