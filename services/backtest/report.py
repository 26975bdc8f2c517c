"""Figures across policies: savings against no battery, and payback with an uncertainty band."""

from __future__ import annotations

from typing import Any

from shared.energy.accounting import PolicyResult
from shared.energy.savings import payback

__all__ = ["payback", "summarise"]


def summarise(results: dict[str, PolicyResult], battery_cost: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    base = results.get("none")
    for name, result in results.items():
        item = result.as_dict()
        if base is not None:
            item["savings_vs_none"] = round(base.cost - result.cost, 4)
            if battery_cost is not None and name != "none":
                item["payback"] = payback(base, result, battery_cost)
        out[name] = item
    return out
