"""``ongrid backtest``: CSV errors name the line; the policies rank as they must on Economy 7."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.backtest import main
from services.backtest.data import DataError, parse_series
from services.backtest.engine import Setup, simulate
from services.dispatcher.core.forecast import PvArray
from shared.config.dispatcher import DispatcherConfig
from shared.config.tariff import TariffConfig
from shared.energy.battery import BatteryModel
from shared.energy.tariff import tariff_from_config

SEED = Path(__file__).parents[2] / "deploy/scenarios/seed-house-year.csv"

CONFIG = """
tariff:
  timezone: Europe/London
  import:
    kind: two_rate
    off_peak: {start: "00:30", end: "07:30", price_per_kwh: 0.09}
    peak_price_per_kwh: 0.30
  export: {kind: flat, price_per_kwh: 0.05}
dispatcher:
  horizon_hours: 24
  pv_azimuth_deg: 141
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timestamp,load_w,pv_w\n2025-01-01T00:00Z,1,0\n2025-01-01T01:00Z,1,0\n", None),
        (
            "timestamp,load_w,pv_w\n2025-01-01T00:00Z,1,0\n2025-01-01T00:30Z,1,0\n2025-01-01T01:30Z,1,0\n",
            "line 4: gap: 3600 s after the previous row, expected 1800 s",
        ),
        (
            "timestamp,load_w,pv_w\n2025-01-01T00:00Z,1,0\n2025-01-01T00:30Z,abc,0\n",
            "line 3: load_w 'abc' is not a number",
        ),
        (
            "timestamp,load_w,pv_w\n2025-01-01T00:00Z,1,0\n2025-01-01T00:30,1,0\n",
            "line 3: timestamp '2025-01-01T00:30' has no UTC offset",
        ),
        (
            "timestamp,load_w,pv_w\n2025-01-01T00:00Z,1,0\n2025-01-01T00:30Z,1,-5\n",
            "line 3: pv_w '-5' must be a finite number >= 0",
        ),
        (
            "timestamp,load_w,pv_w\n2025-01-01T00:00Z,1,0\n2025-01-01T00:00Z,1,0\n",
            "line 3: timestamp '2025-01-01T00:00Z' is not after",
        ),
        ("timestamp,load_w,pv_w\n2025-01-01T00:00Z,1,0\n2025-01-01T02:00Z,1,0\n", "line 3: step of 7200 s"),
        (
            "timestamp,load_w,pv_w\n2025-01-01T00:00Z,1,0\n2025-01-01T00:30Z,1\n",
            "line 3: expected timestamp,load_w,pv_w",
        ),
    ],
)
def test_csv_errors_name_the_line(text: str, message: str | None) -> None:
    if message is None:
        series = parse_series(text, "x.csv")
        assert series.step_s == 3600 and len(series.times) == 2
        return
    with pytest.raises(DataError, match=message):
        parse_series(text, "x.csv")


def _days(tmp_path: Path, first: int, count: int) -> Path:
    lines = SEED.read_text().splitlines()
    out = tmp_path / "days.csv"
    out.write_text("\n".join([lines[0], *lines[1 + first * 48 : 1 + (first + count) * 48]]) + "\n")
    return out


def test_cli_reports_bad_row_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    data = tmp_path / "bad.csv"
    data.write_text("timestamp,load_w,pv_w\n2025-01-01T00:00Z,1,0\n2025-01-01T00:30Z,1,nan\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(data), "--config", str(cfg), "--battery-kwh", "5", "--no-progress"])
    assert exit_info.value.code == 2
    assert "bad.csv line 3: pv_w 'nan' must be a finite number >= 0" in capsys.readouterr().err.replace(
        "\n", ""
    )


def test_cli_json_policies_rank_on_economy7(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    data = _days(tmp_path, 40, 4)  # four February days
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "--data",
                str(data),
                "--config",
                str(cfg),
                "--battery-kwh",
                "8",
                "--power-kw",
                "3",
                "--battery-cost",
                "3000",
                "--json",
                "--no-progress",
            ]
        )
    assert exit_info.value.code == 0
    out = json.loads(capsys.readouterr().out)
    pol = out["policies"]
    assert set(pol) == {"none", "self_use", "planner", "perfect"}
    for name in ("self_use", "planner", "perfect"):
        for key in (
            "cost",
            "import_kwh",
            "export_kwh",
            "self_sufficiency_pct",
            "battery_cycles",
            "nights_to_sunrise",
            "export_by_cause_kwh",
            "savings_vs_none",
            "payback",
        ):
            assert key in pol[name], (name, key)
        assert set(pol[name]["export_by_cause_kwh"]) >= {"battery_full", "mode_flip", "policy"}
    assert pol["planner"]["cost"] < pol["none"]["cost"]
    assert pol["planner"]["cost"] < pol["self_use"]["cost"]  # the cheap night is worth using
    assert pol["perfect"]["cost"] <= pol["planner"]["cost"] + 0.01
    # energy balance of the simulated house: load = pv + import - export + discharge - charge
    p = pol["planner"]
    balance = (
        p["pv_kwh"] + p["import_kwh"] - p["export_kwh"] + p["battery_discharge_kwh"] - p["battery_charge_kwh"]
    )
    assert balance == pytest.approx(p["load_kwh"], abs=0.01)
    assert pol["planner"]["payback"]["payback_band_years"] is None  # four days: no error bar


def test_one_minute_data_controls_each_minute(tmp_path: Path) -> None:
    dispatcher, tariff_cfg = DispatcherConfig(), TariffConfig()  # defaults, whatever ./ongrid.yaml says
    kettle = lambda h, m: 2500 if (h == 12 and m < 3) else 0  # noqa: E731
    lines = ["timestamp,load_w,pv_w"] + [
        f"2025-06-01T{h:02d}:{m:02d}:00Z,{300 + kettle(h, m)},{1500 if 6 <= h < 18 else 0}"
        for h in range(24)
        for m in range(60)
    ]
    series = parse_series("\n".join(lines))
    assert series.step_s == 60
    d = dispatcher
    setup = Setup(
        BatteryModel(capacity_wh=5000, max_charge_w=3000, max_discharge_w=3000),
        d,
        tariff_from_config(tariff_cfg),
        "Europe/London",
        PvArray(4, 30, 180, 53.6, -0.5),
    )
    result = simulate(series, "planner", setup)
    assert result.plans == 48  # every 30 minutes
    assert result.setpoint_changes > 2
    assert result.load_kwh == pytest.approx(sum(300 for _ in range(1440)) / 60000 + 2500 * 3 / 60000)
