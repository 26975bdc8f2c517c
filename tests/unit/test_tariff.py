"""Tariff pricing: windows across midnight and DST, flat, CSV with line-numbered errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from shared.config.tariff import TariffConfig
from shared.energy.tariff import TariffError, parse_price_csv, tariff_from_config


def _tariff(start: str = "00:30", end: str = "07:30", export: dict | None = None) -> TariffConfig:
    return TariffConfig.model_validate(
        {
            "timezone": "Europe/London",
            "import": {
                "kind": "two_rate",
                "off_peak": {"start": start, "end": end, "price_per_kwh": 0.1},
                "peak_price_per_kwh": 0.3,
            },
            "export": export or {"kind": "flat", "price_per_kwh": 0.05},
        }
    )


def test_two_rate_window_is_local_time_in_summer_and_winter() -> None:
    tariff = tariff_from_config(_tariff())
    # 00:30 London is 00:30 UTC in January and 23:30 UTC the day before in July.
    winter = pd.DatetimeIndex(
        ["2025-01-15T00:00Z", "2025-01-15T00:30Z", "2025-01-15T07:00Z", "2025-01-15T07:30Z"]
    )
    summer = pd.DatetimeIndex(
        ["2025-07-14T23:00Z", "2025-07-14T23:30Z", "2025-07-15T06:00Z", "2025-07-15T06:30Z"]
    )
    assert list(tariff.prices(winter, 1800)[0]) == [0.3, 0.1, 0.1, 0.3]
    assert list(tariff.prices(summer, 1800)[0]) == [0.3, 0.1, 0.1, 0.3]


def test_window_across_midnight_and_partial_steps() -> None:
    tariff = tariff_from_config(_tariff("22:00", "06:00"))
    steps = pd.DatetimeIndex(
        ["2025-01-15T21:00Z", "2025-01-15T23:00Z", "2025-01-16T05:30Z", "2025-01-16T12:00Z"]
    )
    prices = tariff.prices(steps, 3600)[0]
    assert list(prices) == [0.3, 0.1, pytest.approx(0.2), 0.3]  # 05:30-06:30 is half cheap


def test_dst_change_day_keeps_the_local_window() -> None:
    tariff = tariff_from_config(_tariff())
    # 30 March 2025: clocks go forward at 01:00 UTC. 07:30 BST is 06:30 UTC.
    day = pd.date_range("2025-03-30T00:00Z", periods=40, freq="30min")
    imp = tariff.prices(day, 1800)[0]
    cheap = [
        t.tz_convert("Europe/London").strftime("%H:%M") for t, p in zip(day, imp, strict=True) if p == 0.1
    ]
    assert cheap[0] == "00:30" and cheap[-1] == "07:00"
    assert sum(imp == 0.1) == 12  # 00:30-01:00 GMT, then 02:00-07:30 BST


def test_csv_prices_and_errors_name_the_line() -> None:
    series = parse_price_csv(
        "start,price_per_kwh\n2025-01-01T00:00Z,0.2\n2025-01-01T00:30Z,-0.01\n", "agile.csv"
    )
    assert series.at(datetime(2025, 1, 1, 0, 45, tzinfo=UTC)) == -0.01
    with pytest.raises(TariffError, match=r"agile\.csv: no price for 2025-01-01T01:00"):
        series.at(datetime(2025, 1, 1, 1, 0, tzinfo=UTC))
    with pytest.raises(TariffError, match="line 3: price 'x' is not a number"):
        parse_price_csv("start,price\n2025-01-01T00:00Z,0.2\n2025-01-01T00:30Z,x\n")
    with pytest.raises(TariffError, match="line 2: start '2025-01-01T00:00' has no UTC offset"):
        parse_price_csv("start,price\n2025-01-01T00:00,0.2\n")


def test_csv_tariff_through_config_reader() -> None:
    cfg = _tariff(export={"kind": "csv", "path": "exp.csv"})
    text = "start,price\n2025-01-01T00:00Z,0.04\n2025-01-01T00:30Z,0.25\n"
    tariff = tariff_from_config(cfg, read_text=lambda path: text)
    exp = tariff.prices(pd.DatetimeIndex(["2025-01-01T00:00Z", "2025-01-01T00:30Z"]), 1800)[1]
    assert list(exp) == [0.04, 0.25]
    with pytest.raises(TariffError, match="no file reader"):
        tariff_from_config(cfg)
