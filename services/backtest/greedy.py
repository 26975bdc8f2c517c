"""A plain greedy self-use, the textbook baseline ``self_use`` is measured against.

Each step: charge from the PV surplus, discharge to cover the deficit, as far as the power limits
and the band the dispatcher keeps (reserve to ceiling) allow; nothing else (no deadband, no
quantum, no ramp, no dwell, no lag). ``self_use`` is the same goal run through the real-time
controller, so the difference between the two bills is what the controller's own rules cost.
"""

from __future__ import annotations

import numpy as np

from shared.energy import soc_limits
from shared.energy.battery import BatteryModel

__all__ = ["greedy_self_use"]


def greedy_self_use(
    load_w: np.ndarray, pv_w: np.ndarray, battery: BatteryModel, soc_pct: float, step_s: int
) -> np.ndarray:
    """Battery power per step (discharge +), greedy self-use from ``soc_pct``."""
    b = battery
    dt_h = step_s / 3600.0
    soc = b.wh(soc_pct)
    lo, hi = soc_limits.plan_band_wh(b, soc_pct)
    out = np.zeros(len(load_w))
    net = (np.asarray(load_w, dtype=float) - np.asarray(pv_w, dtype=float)).tolist()
    for t, need in enumerate(net):
        if need > 0:
            power = min(need, b.max_discharge_w, max(0.0, soc - lo) * b.discharge_efficiency / dt_h)
            soc -= power / b.discharge_efficiency * dt_h
        else:
            power = -min(-need, b.max_charge_w, max(0.0, hi - soc) / (b.charge_efficiency * dt_h))
            soc -= power * b.charge_efficiency * dt_h
        out[t] = power
    return out
