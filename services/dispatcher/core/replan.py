"""When to re-plan: on a schedule, and when the forecast has gone wrong by more than a threshold."""

from __future__ import annotations

from datetime import datetime

__all__ = ["forecast_error_pct", "should_replan"]


def forecast_error_pct(forecast_wh: float, actual_wh: float, floor_wh: float = 200.0) -> float:
    """Relative error of net energy over a window; ``floor_wh`` keeps tiny totals from exploding it."""
    return abs(actual_wh - forecast_wh) / max(abs(forecast_wh), floor_wh) * 100.0


def should_replan(
    now: datetime,
    last_plan_at: datetime | None,
    every_s: float,
    error_pct: float | None = None,
    threshold_pct: float = 30.0,
) -> str | None:
    """The reason to re-plan now (``first``, ``scheduled``, ``forecast_error``), or None."""
    if last_plan_at is None:
        return "first"
    if (now - last_plan_at).total_seconds() >= every_s:
        return "scheduled"
    if error_pct is not None and error_pct > threshold_pct:
        return "forecast_error"
    return None
