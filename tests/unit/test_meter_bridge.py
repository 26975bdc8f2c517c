"""The meter-bridge's pure parts: accuracy data, the low-current verdict, role signs and inversion."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.meter_bridge.accuracy import AccuracyTableError, assess, load_table, spec_for
from services.meter_bridge.service import build_state
from shared.config import MeterConfig
from shared.registers import available_maps, load_map

TS = datetime(2026, 6, 1, 12, tzinfo=UTC)
SDM120 = load_map("eastron_sdm120")


def test_every_shipped_meter_map_has_accuracy_data() -> None:
    meters = [name for name in available_maps() if load_map(name).kind == "meter"]
    assert meters and all(spec_for(name) is not None for name in meters)
    spec = spec_for("eastron_sdm120")
    assert spec is not None and (spec.ib_a, spec.imax_a, spec.accurate_from_a) == (5.0, 45.0, 0.25)


def test_a_bad_table_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "acc.yaml"
    path.write_text("m1: {standard: x, class_pct: 1, low_band_class_pct: 1.5, ib_a: 5, imax_a: 4,"
                    " starting_current_a: 0.02, accurate_from_a: 0.25, full_class_from_a: 0.5, verified: false,"
                    " sources: []}")  # fmt: skip
    with pytest.raises(AccuracyTableError, match="m1"):
        load_table(path)


@pytest.mark.parametrize(
    ("power", "current", "below", "uncertainty"),
    [
        (2000.0, 8.4, False, 20.0),  # class 1 above 0.1 Ib
        (-80.0, 0.35, False, 1.2),  # 0.05-0.1 Ib: 1.5 %
        (30.0, 0.13, True, 60.0),  # below 0.05 Ib: bounded by the edge of the accurate range
        (0.0, 0.0, True, 60.0),
    ],
)
def test_assess_table(power: float, current: float, below: bool, uncertainty: float) -> None:
    spec = spec_for("eastron_sdm120")
    assert spec is not None
    verdict = assess(spec, power, current, 240.0)
    assert verdict.below_accurate_range is below
    assert verdict.uncertainty_w == pytest.approx(uncertainty)


@given(st.floats(-25_000, 25_000), st.floats(0, 100), st.floats(180, 260))
def test_uncertainty_is_never_below_the_class(power: float, current: float, volts: float) -> None:
    spec = spec_for("eastron_sdm120")
    assert spec is not None
    verdict = assess(spec, power, current, volts)
    assert verdict.uncertainty_w >= abs(power) * spec.class_pct / 100 - 1e-9
    assert verdict.below_accurate_range == (current < spec.accurate_from_a)


def values(power: float, current: float) -> dict[str, float]:
    return {
        "voltage_v": 240.0, "current_a": current, "power_w": power, "power_factor": 0.99, "frequency_hz": 50.0,
        "import_energy_wh": 1500.0, "export_energy_wh": 700.0,
    }  # fmt: skip


@pytest.mark.parametrize("role", ["grid", "pv", "load", "heat_pump", "immersion"])
def test_role_sign_and_inversion(role: str) -> None:
    meter = MeterConfig.model_validate(
        {"id": "m", "model": "eastron_sdm120", "role": role, "transport": {"kind": "modbus_tcp", "host": "x"}}
    )
    spec = spec_for("eastron_sdm120")
    state = build_state(meter, SDM120, spec, values(1200.0, 5.0), TS)
    assert (state.role.value, state.power_w, state.import_energy_wh) == (role, 1200.0, 1500.0)
    flipped = build_state(meter.model_copy(update={"invert": True}), SDM120, spec, values(1200.0, 5.0), TS)
    assert (flipped.power_w, flipped.import_energy_wh, flipped.export_energy_wh) == (-1200.0, 700.0, 1500.0)
    low = build_state(meter, SDM120, spec, values(25.0, 0.1), TS)
    assert low.below_accurate_range and low.uncertainty_w == 60.0
