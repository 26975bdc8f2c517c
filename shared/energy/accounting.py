"""What a battery did to a house's energy and money over a stretch of time, and why energy left it.

One tally for the backtest (a policy replayed over a year) and the recorder's daily statistics
(what the real house did), so that both count exports, self sufficiency and cost the same way.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from shared.messages import Intent

from .battery import BatteryModel

__all__ = ["EXPORT_CAUSES", "PolicyResult", "export_cause"]

EXPORT_CAUSES = ("battery_full", "mode_flip", "policy", "power_limit", "no_battery")


@dataclass
class PolicyResult:
    policy: str
    cost: float = 0.0
    import_kwh: float = 0.0
    export_kwh: float = 0.0
    load_kwh: float = 0.0
    pv_kwh: float = 0.0
    charge_kwh: float = 0.0
    discharge_kwh: float = 0.0
    battery_cycles: float = 0.0
    plans: int = 0
    setpoint_changes: int = 0
    export_by_cause_kwh: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(EXPORT_CAUSES, 0.0)
    )
    monthly_cost: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    monthly_days: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    nights_to_sunrise: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def self_sufficiency_pct(self) -> float:
        return 0.0 if self.load_kwh <= 0 else max(0.0, 100.0 * (1 - self.import_kwh / self.load_kwh))

    def as_dict(self) -> dict[str, Any]:
        return {
            "cost": round(self.cost, 4),
            "import_kwh": round(self.import_kwh, 3),
            "export_kwh": round(self.export_kwh, 3),
            "load_kwh": round(self.load_kwh, 3),
            "pv_kwh": round(self.pv_kwh, 3),
            "self_sufficiency_pct": round(self.self_sufficiency_pct, 2),
            "battery_cycles": round(self.battery_cycles, 2),
            "battery_charge_kwh": round(self.charge_kwh, 3),
            "battery_discharge_kwh": round(self.discharge_kwh, 3),
            "plans": self.plans,
            "setpoint_changes": self.setpoint_changes,
            "export_by_cause_kwh": {k: round(v, 3) for k, v in self.export_by_cause_kwh.items()},
            "nights_to_sunrise": self.nights_to_sunrise,
            "monthly_cost": {k: round(v, 4) for k, v in sorted(self.monthly_cost.items())},
        }


def export_cause(
    result: PolicyResult,
    exp_kwh: float,
    battery_w: float,
    dt_h: float,
    intent: Intent,
    has_battery: bool,
    soc_wh: float,
    b: BatteryModel,
) -> None:
    causes = result.export_by_cause_kwh
    if not has_battery:
        causes["no_battery"] += exp_kwh
        return
    from_battery = min(exp_kwh, max(battery_w, 0.0) * dt_h / 1000.0)
    # A battery discharging into the export while the plan did not ask for it: lag, flip-flop.
    causes["policy" if intent is Intent.DISCHARGE else "mode_flip"] += from_battery
    rest = exp_kwh - from_battery
    if rest <= 0:
        return
    if soc_wh >= b.wh(b.ceiling_pct) - 0.005 * b.capacity_wh:
        causes["battery_full"] += rest
    elif battery_w <= -(b.max_charge_w - 1.0):
        causes["power_limit"] += rest
    else:
        causes["policy"] += rest
