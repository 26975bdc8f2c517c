"""The battery as the planner and controller see it: energy, efficiencies, AC-side limits, SoC bands."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config.devices import BatteryConfig, InverterConfig

__all__ = ["BatteryModel"]


@dataclass(frozen=True)
class BatteryModel:
    """Usable energy and limits. Powers are AC-side watts; SoC bands are percent of ``capacity_wh``.

    ``floor_pct``: the hard bottom (BMS/inverter cut-off, mains top-up below it).
    ``reserve_pct``: EPS reserve kept for power cuts; the dispatcher never discharges below it.
    ``ceiling_pct``: the top the dispatcher charges to.
    """

    capacity_wh: float
    max_charge_w: float
    max_discharge_w: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    floor_pct: float = 10.0
    reserve_pct: float = 20.0
    ceiling_pct: float = 100.0

    def __post_init__(self) -> None:
        if self.capacity_wh <= 0:
            raise ValueError(f"capacity_wh must be > 0, got {self.capacity_wh}")
        if self.max_charge_w < 0 or self.max_discharge_w < 0:
            raise ValueError(f"power limits must be >= 0, got {self.max_charge_w} / {self.max_discharge_w}")
        for name in ("charge_efficiency", "discharge_efficiency"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if not 0 <= self.floor_pct <= self.reserve_pct <= self.ceiling_pct <= 100:
            raise ValueError(
                "need 0 <= floor_pct <= reserve_pct <= ceiling_pct <= 100, got "
                f"{self.floor_pct} / {self.reserve_pct} / {self.ceiling_pct}"
            )

    @classmethod
    def from_config(
        cls,
        battery: BatteryConfig,
        inverter: InverterConfig | None = None,
        *,
        capacity_kwh: float | None = None,
        power_kw: float | None = None,
    ) -> BatteryModel:
        """From config; ``capacity_kwh`` / ``power_kw`` override (the backtest's flags)."""
        charge = battery.max_charge_w
        discharge = battery.max_discharge_w
        if inverter is not None:
            charge = min(charge, inverter.max_charge_w)
            discharge = min(discharge, inverter.max_discharge_w)
        if power_kw is not None:
            charge = discharge = power_kw * 1000.0
        return cls(
            capacity_wh=(capacity_kwh if capacity_kwh is not None else battery.usable_kwh) * 1000.0,
            max_charge_w=charge,
            max_discharge_w=discharge,
            charge_efficiency=battery.charge_efficiency,
            discharge_efficiency=battery.discharge_efficiency,
            floor_pct=battery.min_soc_pct,
            reserve_pct=battery.reserve_soc_pct,
            ceiling_pct=battery.max_soc_pct,
        )

    def wh(self, pct: float) -> float:
        return pct / 100.0 * self.capacity_wh

    def pct(self, wh: float) -> float:
        return wh / self.capacity_wh * 100.0
