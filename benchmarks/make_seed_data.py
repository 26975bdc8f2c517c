"""Regenerate deploy/scenarios/seed-house-year.csv: a year of the seed house at 30-minute steps.

PV: pvlib Ineichen clear-sky for the seed array (53.6 N, -0.5 E, 4 kWp, tilt 30, azimuth 141),
POA by the isotropic model, 14% system losses, times a cloudiness model: a daily clearness drawn
from a beta distribution whose mean follows the season (0.33 in December to 0.57 in June, AR(1)
day to day so that dull and bright spells last), times a half-hourly AR(1) log-normal flicker.
Scaled once so the year gives ~3,400 kWh (PVGIS for the seed site).
Demand: a UK evening-peaked day (weekday and weekend shapes), a winter/summer factor (1.25/0.85),
random appliance bursts (washing machine, oven, kettle runs averaged over the half-hour), scaled
to ~3,300 kWh a year. Seeded, so the file is reproducible: ``python benchmarks/make_seed_data.py``.

Other years for the planner's tests against forecasts it has never seen: ``--weather FILE`` takes
the PV from a TMY3 weather file instead of the cloudiness model (real hourly irradiance, e.g. the
two pvlib ships: 723170TYA.CSV Greensboro NC, 703165TY.csv Sand Point AK), transposed to the same
array at the file's own site and scaled to the same ~3,400 kWh; ``--seed`` draws another demand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib

LAT, LON, KWP, TILT, AZIMUTH = 53.6, -0.5, 4.0, 30.0, 141.0
PV_KWH_YEAR, LOAD_KWH_YEAR = 3400.0, 3300.0


def pv_series(times: pd.DatetimeIndex, rng: np.random.Generator) -> np.ndarray:
    middle = times + pd.Timedelta(minutes=15)
    site = pvlib.location.Location(LAT, LON)
    solar = site.get_solarposition(middle)
    sky = site.get_clearsky(middle, model="ineichen", solar_position=solar)
    poa = pvlib.irradiance.get_total_irradiance(
        TILT, AZIMUTH, solar["apparent_zenith"], solar["azimuth"], sky["dni"], sky["ghi"], sky["dhi"]
    )["poa_global"].fillna(0.0)
    clear = KWP * np.asarray(poa) * (1 - 0.14)
    days = np.asarray(times.tz_convert("Europe/London").normalize().day_of_year)
    n_days = days.max() + 1
    doy = np.arange(n_days)
    mean = 0.45 + 0.12 * np.cos(2 * np.pi * (doy - 172) / 365.0)
    daily = np.empty(n_days)
    z = 0.0
    for d in range(n_days):
        z = 0.5 * z + np.sqrt(1 - 0.25) * rng.normal()
        u = 0.5 * (1 + np.tanh(z / 1.2))  # correlated uniform-ish in (0, 1)
        a = mean[d] * 4.0
        daily[d] = np.clip(np.quantile(rng.beta(a, 4.0 - a, 64), u), 0.03, 1.0)
    flicker = np.empty(len(times))
    f = 0.0
    for k in range(len(times)):
        f = 0.7 * f + 0.3 * rng.normal()
        flicker[k] = np.exp(0.35 * f)
    pv = clear * daily[days] * flicker
    return np.clip(pv, 0.0, KWP * 1000.0 * 0.95)


def tmy3_pv_series(times: pd.DatetimeIndex, path: str) -> np.ndarray:
    """PV of the seed array from a TMY3 file's hourly irradiance, at the file's own site, on its own
    clock: the house is in the UK, so the site's local standard time is laid onto UTC (the UK's
    standard time) and the sun rises in the morning of the house's day.

    TMY3 hours are stamped at their end in local standard time; each is moved to its start and to
    UTC, then held over its two half-hours. The file's typical year is laid onto ``times``' year.
    """
    data, meta = pvlib.iotools.read_tmy3(path, coerce_year=int(times[0].year), map_variables=True)
    times = times - pd.Timedelta(hours=float(meta["TZ"]))  # the site's instants at the same clock time
    hourly = data[["ghi", "dni", "dhi"]].copy()
    hourly.index = (hourly.index - pd.Timedelta(hours=1)).tz_convert("UTC")
    hourly = hourly.sort_index()
    hourly = hourly[~hourly.index.duplicated()]
    # Whole hours around the year's ends wrap around, so every half-hour of the year has a value.
    by_hour = hourly.groupby([hourly.index.day_of_year, hourly.index.hour]).mean()
    keys = list(zip(np.minimum(times.day_of_year, 365), times.hour, strict=True))
    values = by_hour.reindex(keys).ffill().bfill().to_numpy()
    ghi, dni, dhi = values[:, 0], values[:, 1], values[:, 2]
    middle = times + pd.Timedelta(minutes=15)
    site = pvlib.location.Location(meta["latitude"], meta["longitude"])
    solar = site.get_solarposition(middle)
    poa = pvlib.irradiance.get_total_irradiance(
        TILT, AZIMUTH, solar["apparent_zenith"], solar["azimuth"], dni, ghi, dhi
    )["poa_global"]
    pv = KWP * np.asarray(pd.Series(poa).fillna(0.0)) * (1 - 0.14)
    return np.clip(pv, 0.0, KWP * 1000.0 * 0.95)


def load_series(times: pd.DatetimeIndex, rng: np.random.Generator) -> np.ndarray:
    local = times.tz_convert("Europe/London")
    hours = np.asarray(local.hour + local.minute / 60.0) + 0.25
    weekend = np.asarray(local.day_of_week >= 5)
    weekday_shape = (
        0.45 + 0.6 * np.exp(-0.5 * ((hours - 7.5) / 1.0) ** 2) + 1.4 * np.exp(-0.5 * ((hours - 18.5) / 1.7) ** 2)
    )
    weekend_shape = (
        0.45
        + 0.5 * np.exp(-0.5 * ((hours - 9.5) / 1.5) ** 2)
        + 0.5 * np.exp(-0.5 * ((hours - 13.0) / 1.5) ** 2)
        + 1.2 * np.exp(-0.5 * ((hours - 18.0) / 1.8) ** 2)
    )
    shape = np.where(weekend, weekend_shape, weekday_shape)
    doy = np.asarray(local.day_of_year)
    season = 1.05 + 0.2 * np.cos(2 * np.pi * (doy - 15) / 365.0)
    awake = (hours > 6.5) & (hours < 23.0)
    bursts = np.where(awake & (rng.random(len(times)) < 0.12), rng.gamma(2.0, 350.0, len(times)), 0.0)
    noise = rng.normal(1.0, 0.12, len(times))
    load = np.clip(180.0 + 300.0 * shape * season * noise + bursts, 90.0, None)
    return load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent.parent / "deploy/scenarios/seed-house-year.csv"))
    parser.add_argument("--year", type=int, default=2025)
    parser.add_argument("--seed", type=int, default=20251)
    parser.add_argument("--weather", help="TMY3 file for the PV instead of the cloudiness model")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    times = pd.date_range(f"{args.year}-01-01T00:00Z", f"{args.year + 1}-01-01T00:00Z", freq="30min", inclusive="left")
    pv = tmy3_pv_series(times, args.weather) if args.weather else pv_series(times, rng)
    pv *= PV_KWH_YEAR / (pv.sum() * 0.5 / 1000.0)
    load = load_series(times, rng)
    load *= LOAD_KWH_YEAR / (load.sum() * 0.5 / 1000.0)
    frame = pd.DataFrame(
        {"timestamp": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "load_w": load.round(1), "pv_w": pv.round(1)}
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"wrote {args.out}: {len(frame)} rows, PV {pv.sum() / 2000:.0f} kWh, load {load.sum() / 2000:.0f} kWh")


if __name__ == "__main__":
    main()
