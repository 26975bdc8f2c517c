"""Year backtest benchmark on the seed house: wall time of all four policies at 30-minute and
1-minute data (run side by side, as ``ongrid backtest`` runs them), each policy's cost, and the
share of the yardstick's savings the planner captures. Prints JSON. ``--days N`` runs a shorter
slice for a quick look; ``--data FILE`` another year (e.g. from ``make_seed_data.py --weather``).

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

from services.backtest.data import Series, read_series
from services.backtest.engine import Setup
from services.backtest.parallel import run_policies
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


def decompose(series: Series, setup: Setup) -> dict[str, float]:
    """The planner's bill with the actual future in place of each forecast (30-minute data)."""
    import dataclasses
    from concurrent.futures import ProcessPoolExecutor

    from services.backtest.engine import simulate

    variants = {"actual_pv": {"pv"}, "actual_load": {"load"}, "actual_both": {"load", "pv"}}
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(simulate, series, "planner", dataclasses.replace(setup, oracle=frozenset(told)))
            for name, told in variants.items()
        }
        return {f"planner_{name}": round(f.result().cost, 2) for name, f in futures.items()}


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the policy workers)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--export-price", type=float, default=0.05)
    parser.add_argument("--skip-minutely", action="store_true")
    parser.add_argument("--data", default=str(SEED), help="timestamp,load_w,pv_w CSV at 30-minute steps")
    parser.add_argument("--policies", default="none,self_use,planner,perfect")
    parser.add_argument(
        "--decompose",
        action="store_true",
        help="also run the planner told the actual PV, the actual load, and both: what each forecast costs",
    )
    args = parser.parse_args()
    full = read_series(args.data)
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
        "data": Path(args.data).name,
        "days": args.days,
        "export_price": args.export_price,
    }
    policies = args.policies.split(",")

    def run(data: Series, label: str) -> None:
        began, cpu = time.perf_counter(), _cpu()
        results = run_policies(data, policies, setup)
        out[f"wall_s_{label}"] = round(time.perf_counter() - began, 2)
        out[f"cpu_s_{label}"] = round(_cpu() - cpu, 2)
        costs = {name: r.cost for name, r in results.items()}
        out[f"cost_{label}"] = {name: round(c, 2) for name, c in costs.items()}
        out[f"wear_cost_{label}"] = {name: round(r.wear_cost, 2) for name, r in results.items()}
        if "self_use" in results and results["self_use"].greedy_cost is not None:
            out[f"greedy_self_use_cost_{label}"] = round(float(results["self_use"].greedy_cost), 2)
        if {"none", "planner", "perfect"} <= costs.keys():
            best = costs["none"] - costs["perfect"]
            out[f"planner_capture_pct_{label}"] = round((costs["none"] - costs["planner"]) / best * 100, 2)
        if "perfect" in results:
            out[f"perfect_method_{label}"] = results["perfect"].method
        if "planner" in results:
            # The planner's data in spans side by side; those replayed again from the true state.
            out[f"planner_spans_{label}"] = results["planner"].spans
            out[f"planner_spans_rerun_{label}"] = results["planner"].spans_rerun

    run(series, "30min")
    if args.decompose:
        out["decomposition_30min"] = decompose(series, setup)
    if not args.skip_minutely:
        run(minutely(series), "1min")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    silence_highs_banner()
    main()
