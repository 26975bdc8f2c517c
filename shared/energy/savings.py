"""Savings of a battery against none, and the years to pay it back, with an uncertainty band."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .accounting import PolicyResult

__all__ = ["payback"]


def payback(none: PolicyResult, other: PolicyResult, battery_cost: float) -> dict[str, Any]:
    """Years to pay ``battery_cost`` back, from the spread of monthly savings (per day of data).

    Each month's savings per day is one sample; the annual saving is their mean times 365 and its
    95% band is 1.96 standard errors. Fewer than two months of data: no band (a payback from a few
    days of data is a guess, and says so).
    """
    months = sorted(set(none.monthly_cost) & set(other.monthly_cost))
    daily = np.array(
        [
            (none.monthly_cost[m] - other.monthly_cost[m]) / other.monthly_days[m]
            for m in months
            if other.monthly_days[m] > 0
        ]
    )
    if len(daily) == 0:
        return {"payback_years": None, "note": "no data"}
    annual = float(daily.mean() * 365.0)
    out: dict[str, Any] = {"annual_savings": round(annual, 2), "months": len(daily)}
    out["payback_years"] = round(battery_cost / annual, 2) if annual > 0 else None
    if len(daily) < 2:
        out["payback_band_years"] = None
        out["note"] = "under two months of data: no uncertainty band"
        return out
    se = float(daily.std(ddof=1) / math.sqrt(len(daily)) * 365.0)
    high_savings, low_savings = annual + 1.96 * se, annual - 1.96 * se
    out["annual_savings_band"] = [round(low_savings, 2), round(high_savings, 2)]
    out["payback_band_years"] = [
        round(battery_cost / high_savings, 2) if high_savings > 0 else None,
        round(battery_cost / low_savings, 2) if low_savings > 0 else None,  # None: may never pay back
    ]
    return out
