"""PV generation at the house's AC bus, precomputed as numpy arrays (W) for whole days at once.

Irradiance comes from one of two sources, both expressed as a *clear-sky index* ``k`` (measured or
modelled GHI over clear-sky GHI) which is then applied to the clear sky of the scenario's site:

* ``CloudModel``: clear sky with a seedable stochastic cloudiness model. Clear sky alone overstates UK
  yield by ~50%; each day draws a daily mean index from a Beta distribution whose mean follows the
  month (grey winters, brighter late spring), and minutes wander around it as an AR(1) process whose
  spread is largest on broken-cloud days. Each day is drawn from its own ``(seed, day)`` stream, so a
  day's weather does not depend on which day the run started.
* ``WeatherFile``: an EPW, TMY3 or PVGIS-TMY file read with pvlib's readers. The file's hourly GHI is
  turned into a clear-sky index at the *file's* site and hour, and that index is applied at the
  scenario site. A file recorded elsewhere (a nearby airport's TMY) therefore still gives sunrise and
  sunset at the right times for the house.

Then: Erbs decomposition into direct and diffuse, Hay-Davies transposition onto the array, Faiman cell
temperature, PVWatts DC with a temperature coefficient, system losses, and the PV inverter's AC cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pvlib
from scipy.signal import lfilter

MINUTES_PER_DAY = 1440


@dataclass(frozen=True, slots=True)
class Site:
    latitude: float = 53.6
    longitude: float = -0.5
    altitude_m: float = 10.0
    timezone: str = "Europe/London"


@dataclass(frozen=True, slots=True)
class PvArray:
    kwp: float = 4.0
    tilt_deg: float = 30.0
    azimuth_deg: float = 141.0
    losses_pct: float = 14.0
    ac_limit_w: float = 3680.0
    gamma_pdc: float = -0.0037


# Monthly mean clear-sky index for the cloud model, January..December. Calibrated so that the seed
# site (53.6 N, 4 kWp, 30 deg, 141 deg) yields ~3,400 kWh/yr, PVGIS's figure for that house.
UK_MONTHLY_CLEARNESS = (0.53, 0.55, 0.56, 0.61, 0.61, 0.62, 0.63, 0.62, 0.61, 0.59, 0.53, 0.51)


@dataclass(frozen=True, slots=True)
class CloudModel:
    seed: int = 1
    monthly_clearness: tuple[float, ...] = UK_MONTHLY_CLEARNESS
    # Beta concentration of the daily mean: lower gives more extreme (very clear / very dull) days.
    daily_concentration: float = 3.0
    # AR(1) persistence per minute and the spread of minute-level variation on a broken-cloud day.
    persistence: float = 0.97
    minute_spread: float = 0.35

    def __post_init__(self) -> None:
        if len(self.monthly_clearness) != 12 or not all(0 < c < 1 for c in self.monthly_clearness):
            raise ValueError(f"monthly_clearness needs 12 values in (0, 1), got {self.monthly_clearness}")

    def day_index(self, day: date) -> np.ndarray:
        """The clear-sky index for each minute of ``day`` (local), from the stream ``(seed, day)``."""
        rng = np.random.default_rng([self.seed, 0xC10D, day.toordinal()])
        mean = self.monthly_clearness[day.month - 1]
        c = self.daily_concentration
        daily = rng.beta(mean * c, (1 - mean) * c)
        # Broken cloud (daily index near the middle) varies most minute to minute.
        spread = self.minute_spread * 4.0 * daily * (1.0 - daily)
        noise = rng.standard_normal(MINUTES_PER_DAY) * spread * np.sqrt(1 - self.persistence**2)
        wander = lfilter([1.0], [1.0, -self.persistence], noise)
        return np.clip(daily + wander, 0.03, 1.15)


FileFormat = Literal["epw", "tmy3", "pvgis"]


@dataclass(frozen=True, slots=True)
class WeatherFile:
    path: Path
    format: FileFormat = "epw"


class _FileIndex:
    """Hourly clear-sky index and air temperature of a typical year, by (day of year, hour)."""

    def __init__(self, source: WeatherFile) -> None:
        data, latitude, longitude = _read_weather(source)
        if len(data) < 8760:
            raise ValueError(f"weather file {source.path}: expected 8760 hourly rows, got {len(data)}")
        data = data.iloc[:8760]
        # Hourly values describe the hour ending at the stamp: evaluate the clear sky at its middle.
        times = data.index - pd.Timedelta(minutes=30)
        location = pvlib.location.Location(latitude, longitude)
        clear = location.get_clearsky(times, model="ineichen")["ghi"].to_numpy()
        ghi = data["ghi"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            index = np.where(clear > 20.0, ghi / clear, np.nan)
        self.k = _fill_night(np.clip(index, 0.0, 1.2)).reshape(365, 24)
        self.temp_c = data["temp_air"].to_numpy(dtype=float).reshape(365, 24)

    def day(self, day: date) -> tuple[np.ndarray, np.ndarray]:
        row = min(day.timetuple().tm_yday, 365) - 1
        hours = np.arange(MINUTES_PER_DAY) / 60.0
        # Hour h's value centres on h-0.5; interpolate minutes between hour centres of the day.
        centres = np.arange(24) + 0.5
        k = np.interp(hours, centres, self.k[row])
        temp = np.interp(hours, centres, self.temp_c[row])
        return k, temp


def _fill_night(values: np.ndarray) -> np.ndarray:
    """Night hours have no index: carry the nearest daylight value so dawn ramps start sensibly."""
    out = values.copy()
    valid = np.flatnonzero(~np.isnan(out))
    if valid.size == 0:
        raise ValueError("weather file has no daylight GHI at all")
    positions = np.arange(out.size)
    out[np.isnan(out)] = np.interp(positions[np.isnan(out)], valid, out[valid])
    return out


def _read_weather(source: WeatherFile) -> tuple[pd.DataFrame, float, float]:
    """Read a weather file; whatever pvlib's reader chokes on becomes one error naming the file."""
    try:
        return _read_weather_file(source)
    except (OSError, KeyError, IndexError, ValueError, pd.errors.ParserError) as exc:
        if isinstance(exc, ValueError) and str(source.path) in str(exc):
            raise
        raise ValueError(
            f"weather file {source.path} is not a readable {source.format} file ({type(exc).__name__}: {exc})"
        ) from None


def _read_weather_file(source: WeatherFile) -> tuple[pd.DataFrame, float, float]:
    path = str(source.path)
    if source.format == "epw":
        data, meta = pvlib.iotools.read_epw(path)
    elif source.format == "tmy3":
        data, meta = pvlib.iotools.read_tmy3(path, map_variables=True)
    elif source.format == "pvgis":
        result = pvlib.iotools.read_pvgis_tmy(path, map_variables=True)
        data, meta = result[0], result[-1]
        if "location" in meta:
            meta = meta["location"]
    else:  # pragma: no cover - Literal guards this
        raise ValueError(f"unknown weather file format {source.format!r}")
    for column in ("ghi", "temp_air"):
        if column not in data.columns:
            raise ValueError(f"weather file {path} has no {column!r} column")
    return data, float(meta["latitude"]), float(meta["longitude"])


def seasonal_temp_c(times: pd.DatetimeIndex, site: Site) -> np.ndarray:
    """Air temperature without a weather file: a UK-like seasonal and daily cycle (deg C)."""
    local = times.tz_convert(site.timezone)
    doy = local.day_of_year.to_numpy()
    hour = local.hour.to_numpy() + local.minute.to_numpy() / 60.0
    season = 10.0 - 6.5 * np.cos(2 * np.pi * (doy - 20) / 365.0)
    daily = 3.5 * np.cos(2 * np.pi * (hour - 15.0) / 24.0)
    return season + daily


@dataclass(frozen=True, slots=True)
class PvDays:
    """Minute-resolution series for consecutive local days starting at ``first_day``."""

    first_day: date
    times: pd.DatetimeIndex
    pv_w: np.ndarray
    temp_c: np.ndarray


def local_minutes(first_day: date, days: int, timezone: str) -> pd.DatetimeIndex:
    """Every minute of ``days`` local days, as UTC instants (23- and 25-hour days included)."""
    start = pd.Timestamp(first_day).tz_localize(timezone)
    end = pd.Timestamp(first_day + timedelta(days=days)).tz_localize(timezone)
    return pd.date_range(start, end, freq="1min", inclusive="left").tz_convert("UTC")


def pv_days(
    first_day: date,
    days: int,
    site: Site,
    array: PvArray,
    weather: CloudModel | WeatherFile,
    file_index: _FileIndex | None = None,
) -> PvDays:
    """PV AC power (W) for every minute of ``days`` local days."""
    times = local_minutes(first_day, days, site.timezone)
    local = times.tz_convert(site.timezone)
    day_of = np.array([d.toordinal() for d in local.date], dtype=np.int64)
    minute_of_day = (local.hour.to_numpy() * 60 + local.minute.to_numpy()) % MINUTES_PER_DAY
    k = np.empty(len(times))
    temp = np.empty(len(times))
    if isinstance(weather, WeatherFile):
        index = file_index or _FileIndex(weather)
    for ordinal in np.unique(day_of):
        mask = day_of == ordinal
        day = date.fromordinal(int(ordinal))
        if isinstance(weather, CloudModel):
            k[mask] = weather.day_index(day)[minute_of_day[mask]]
        else:
            day_k, day_t = index.day(day)
            k[mask] = day_k[minute_of_day[mask]]
            temp[mask] = day_t[minute_of_day[mask]]
    if isinstance(weather, CloudModel):
        temp = seasonal_temp_c(times, site)
    return PvDays(first_day, times, pv_power_w(times, k, temp, site, array), temp)


def pv_power_w(
    times: pd.DatetimeIndex, clear_index: np.ndarray, temp_c: np.ndarray, site: Site, array: PvArray
) -> np.ndarray:
    location = pvlib.location.Location(site.latitude, site.longitude, altitude=site.altitude_m)
    solpos = location.get_solarposition(times, method="ephemeris")
    zenith = solpos["apparent_zenith"].to_numpy()
    azimuth = solpos["azimuth"].to_numpy()
    clear = location.get_clearsky(times, model="ineichen", solar_position=solpos)
    ghi = clear["ghi"].to_numpy() * clear_index
    split = pvlib.irradiance.erbs(ghi, zenith, times)
    dni_extra = pvlib.irradiance.get_extra_radiation(times).to_numpy()
    poa = pvlib.irradiance.get_total_irradiance(
        array.tilt_deg,
        array.azimuth_deg,
        zenith,
        azimuth,
        np.asarray(split["dni"]),
        ghi,
        np.asarray(split["dhi"]),
        dni_extra=dni_extra,
        model="haydavies",
    )
    poa_global = np.nan_to_num(np.asarray(poa["poa_global"], dtype=float), nan=0.0)
    cell_c = pvlib.temperature.faiman(poa_global, temp_c, wind_speed=2.0)
    dc = pvlib.pvsystem.pvwatts_dc(poa_global, cell_c, array.kwp * 1000.0, array.gamma_pdc)
    ac = np.asarray(dc, dtype=float) * (1.0 - array.losses_pct / 100.0)
    return np.clip(np.nan_to_num(ac, nan=0.0), 0.0, array.ac_limit_w)
