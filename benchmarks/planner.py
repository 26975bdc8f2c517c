"""Planner benchmark: solve time on a 48 h horizon and the gap to the full HiGHS MILP. Prints JSON.

Two tariffs: Economy 7 with a 5p export (import never below export: the plain LP is exact) and
Economy 7 with a 15p export (the night is cheaper than export: the hard, non-convex case).
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
import pandas as pd

from services.dispatcher.core.forecast import PvArray, clear_sky_pv_w, default_load_shape
from services.dispatcher.core.planner import PlanInputs, plan, reference_milp
from services.dispatcher.highs import silence_highs_banner
from shared.config.tariff import TariffConfig
from shared.energy.battery import BatteryModel
from shared.energy.tariff import tariff_from_config


def case(export: float, day: str, seed: int) -> PlanInputs:
    tariff = tariff_from_config(
        TariffConfig.model_validate(
            {
                "import": {
                    "kind": "two_rate",
                    "off_peak": {"start": "00:30", "end": "07:30", "price_per_kwh": 0.09},
                    "peak_price_per_kwh": 0.30,
                },
                "export": {"kind": "flat", "price_per_kwh": export},
            }
        )
    )
    starts = pd.date_range(f"{day}T16:00Z", periods=96, freq="30min")
    imp, exp = tariff.prices(starts, 1800)
    rng = np.random.default_rng(seed)
    pv = clear_sky_pv_w(PvArray(4.0, 30, 141, 53.6, -0.5), starts, 1800) * rng.uniform(0.3, 0.9)
    slots = np.asarray(starts.tz_convert("Europe/London").hour * 2 + starts.tz_convert("Europe/London").minute // 30)
    load = default_load_shape(48)[slots] * 9000 / 24 * rng.uniform(0.8, 1.2, 96)
    return PlanInputs(
        start=starts[0].to_pydatetime(),
        step_s=1800,
        soc_pct=float(rng.uniform(20, 80)),
        import_price=imp,
        export_price=exp,
        pv_w=pv,
        load_w=load,
        battery=BatteryModel(capacity_wh=10400, max_charge_w=3000, max_discharge_w=3000),
    )


def measure(export: float, repeats: int = 5) -> dict[str, object]:
    times, gaps, solvers = [], [], []
    for seed, day in enumerate(("2025-01-15", "2025-04-15", "2025-06-21", "2025-10-01")):
        inputs = case(export, day, seed)
        for _ in range(repeats):
            t = time.perf_counter()
            ours = plan(inputs)
            times.append(time.perf_counter() - t)
        solvers.append(ours.solver)
        ref = reference_milp(inputs)
        gaps.append((ours.objective - ref.objective) / max(abs(ref.objective), 1.0) * 100.0)
    return {
        "export_price": export,
        "horizon_steps": 96,
        "plan_ms_median": round(statistics.median(times) * 1000, 2),
        "plan_ms_max": round(max(times) * 1000, 2),
        "gap_to_milp_pct_max": round(max(gaps), 4),
        "solvers": sorted(set(solvers)),
    }


if __name__ == "__main__":
    silence_highs_banner()
    print(json.dumps({"benchmark": "planner_48h", "cases": [measure(0.05), measure(0.15, repeats=1)]}, indent=2))
