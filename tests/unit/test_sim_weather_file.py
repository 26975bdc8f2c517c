"""The simulator's weather-file path, with the typical-year file that ships inside pvlib."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pvlib
import pytest

from services.simulator.physics.pv import CloudModel, PvArray, Site, WeatherFile, pv_days

TMY3 = Path(pvlib.__file__).parent / "data" / "723170TYA.CSV"  # Greensboro, NC, 36 N


def test_a_tmy3_year_gives_a_plausible_and_weather_shaped_yield() -> None:
    site = Site(latitude=36.1, longitude=-79.9, timezone="America/New_York")
    year = pv_days(date(2026, 1, 1), 365, site, PvArray(azimuth_deg=180), WeatherFile(TMY3, "tmy3"))
    kwh = year.pv_w.sum() / 60_000
    # 4 kWp facing south at 36 N: PVWatts gives about 5,500 kWh a year; the file's clouds must show.
    assert 4_500 <= kwh <= 6_500, kwh
    assert year.pv_w.min() >= 0 and year.pv_w.max() <= PvArray().ac_limit_w
    clouds = pv_days(date(2026, 1, 1), 365, site, PvArray(azimuth_deg=180), CloudModel(seed=1))
    daily_file = year.pv_w.reshape(365, -1).sum(axis=1)
    daily_clouds = clouds.pv_w.reshape(365, -1).sum(axis=1)
    assert abs(daily_file - daily_clouds).mean() > 0.05 * daily_file.mean(), "file weather had no effect"


def test_a_broken_weather_file_is_named_in_the_error(tmp_path: Path) -> None:
    bad = tmp_path / "short.epw"
    bad.write_text("not,a,weather,file\n")
    with pytest.raises(ValueError, match=r"weather file .*short\.epw"):
        pv_days(date(2026, 1, 1), 1, Site(), PvArray(), WeatherFile(bad, "epw"))
