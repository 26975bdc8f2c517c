"""Planner benchmark: solve time on a 48 h horizon, the gap to the full HiGHS MILP, and EMHASS's
optimiser on the same problems side by side. Prints JSON.

Two tariffs: Economy 7 with a 5p export (import never below export: the plain LP is exact) and
Economy 7 with a 15p export (the night is cheaper than export: the hard, non-convex case). 24
different 48 h problems each (two days a month, random SoC, PV clearness and load), each solved
once: a plan is never timed on the problem it has just solved.

Times: wall clock (``plan_ms_*``) and the process's CPU time (``plan_cpu_ms_*``, user + system
of every thread): the machine may be shared, and the load average is printed beside them.
``gap_to_milp_pct_max``: ongrid's objective over ``reference_milp``'s (a direction binary on
every step, solved to a 1e-6 gap), worst of the problems.

EMHASS runs when it is importable (``.venv-emhass/bin/python benchmarks/planner.py``, see
benchmarks/emhass_peer.py): the same problems, EMHASS's plan minimising bill plus wear to the same
end SoC; ``time_ratio`` is EMHASS's solve time over ongrid's (medians), ``bill_gap_pct`` EMHASS's
bill minus ongrid's, and ``bill_wear_gap_pct`` the same with wear added to both, each over
max(|ongrid's|, 1 currency unit); ``..._vs_ongrid_without_switch_cost`` against ongrid's plan
with ``switch_cost`` 0, since EMHASS has no such term (a negative gap: EMHASS's bill is lower).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from services.dispatcher.core.forecast import PvArray, clear_sky_pv_w, default_load_shape
from services.dispatcher.core.planner import PlanInputs, plan, reference_milp
from services.dispatcher.highs import silence_highs_banner
from shared.config.tariff import TariffConfig
from shared.energy.battery import BatteryModel
from shared.energy.tariff import tariff_from_config

sys.path.insert(0, str(Path(__file__).parent))
from emhass_peer import EmhassPeer, unavailable


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


DAYS = tuple(f"2025-{month:02d}-{day:02d}" for month in range(1, 13) for day in (5, 20))


def measure(export: float, peer: Any | None) -> dict[str, object]:
    times, cpu, gaps, solvers, peer_times, bill_gaps, wear_gaps, free_gaps = [], [], [], [], [], [], [], []
    statuses: collections.Counter[str] = collections.Counter()
    for seed, day in enumerate(DAYS):
        inputs = case(export, day, seed)
        t, c = time.perf_counter(), time.process_time()
        ours = plan(inputs)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        solvers.append(ours.solver)
        ref = reference_milp(inputs)
        gaps.append((ours.objective - ref.objective) / max(abs(ref.objective), 1.0) * 100.0)
        if peer is not None:
            theirs = peer.solve(inputs, float(ours.soc_pct_end[-1]))
            peer_times.append(theirs["seconds"])
            statuses[theirs["status"]] += 1
            scale = max(abs(ours.cost), 1.0)
            bill_gaps.append((theirs["bill"] - ours.cost) / scale * 100.0)
            dt_h = inputs.step_s / 3600.0
            our_wear = inputs.cycle_cost_per_kwh / 2.0 * float(np.abs(ours.battery_w).sum()) * dt_h / 1000.0
            wear_gaps.append((theirs["bill"] + theirs["wear"] - ours.cost - our_wear) / scale * 100.0)
            # EMHASS has no switching cost: against ongrid's plan without one too (not timed).
            free = plan(dataclasses.replace(inputs, switch_cost=0.0))
            free_gaps.append((theirs["bill"] - free.cost) / max(abs(free.cost), 1.0) * 100.0)
    out: dict[str, object] = {
        "export_price": export,
        "horizon_steps": 96,
        "problems": len(DAYS),
        "plan_ms_median": round(statistics.median(times) * 1000, 2),
        "plan_ms_p95": round(float(np.percentile(times, 95)) * 1000, 2),
        "plan_ms_max": round(max(times) * 1000, 2),
        "plan_cpu_ms_median": round(statistics.median(cpu) * 1000, 2),
        "plan_cpu_ms_p95": round(float(np.percentile(cpu, 95)) * 1000, 2),
        "gap_to_milp_pct_max": round(max(gaps), 4),
        "solvers": sorted(set(solvers)),
    }
    if peer is not None:
        out["emhass"] = {
            "solve_ms_median": round(statistics.median(peer_times) * 1000, 1),
            "time_ratio": round(statistics.median(peer_times) / statistics.median(times), 1),
            "bill_gap_pct_median": round(statistics.median(bill_gaps), 3),
            "bill_gap_pct_min": round(min(bill_gaps), 3),
            "bill_gap_pct_max": round(max(bill_gaps), 3),
            "bill_wear_gap_pct_median": round(statistics.median(wear_gaps), 3),
            "bill_wear_gap_pct_min": round(min(wear_gaps), 3),
            "bill_wear_gap_pct_max": round(max(wear_gaps), 3),
            "bill_gap_pct_vs_ongrid_without_switch_cost_median": round(statistics.median(free_gaps), 3),
            "bill_gap_pct_vs_ongrid_without_switch_cost_min": round(min(free_gaps), 3),
            "bill_gap_pct_vs_ongrid_without_switch_cost_max": round(max(free_gaps), 3),
            "status": dict(statuses),
        }
    return out


if __name__ == "__main__":
    silence_highs_banner()
    why = unavailable()
    peer = None if why else EmhassPeer()
    load_before = os.getloadavg()
    result: dict[str, object] = {"benchmark": "planner_48h", "cases": [measure(0.05, peer), measure(0.15, peer)]}
    result["load_average_1m"] = {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)}
    if why:
        result["emhass"] = why
    print(json.dumps(result, indent=2))
