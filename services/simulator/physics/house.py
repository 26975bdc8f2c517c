"""The house: PV, demand, flexible loads, the inverter and the battery, stepped together.

One step, in the order the real devices react:

1. PV, base demand and air temperature come from precomputed minute arrays (``Series``);
2. the house load is base demand plus what the diverter and heat pump decided last step;
3. the inverter reads its grid CT (with last step's battery output still flowing), picks a setpoint
   for its mode, and the battery delivers what its limits allow;
4. grid power is what is left: ``grid = load - pv - battery`` (import +), so energy is conserved
   at every step by construction, and the totals are kept so a test can check it independently;
5. the diverter reads *its own* clamp on the grid tails and reacts (``loads.Diverter``); the heat
   pump follows the weather.

During a grid outage the inverter runs EPS: the grid term is zero, the battery covers
``load - pv`` when it can, PV is curtailed when the battery cannot take the surplus, and the house
goes dark (load unserved, PV tripped) when the load is more than battery and PV can carry.

Time is seconds since the Unix epoch in UTC, simulated: nothing here reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from .battery import Battery, BatteryParams
from .demand import DemandModel
from .inverter import Inverter, InverterParams
from .loads import Diverter, DiverterParams, HeatPump, HeatPumpParams
from .meters import Ct, CtErrorModel, EnergyMeter
from .pv import MINUTES_PER_DAY, CloudModel, PvArray, Site, WeatherFile, _FileIndex, pv_days

POSITIONS = ("grid", "pv", "load", "battery", "diverter", "heat_pump")


@dataclass(frozen=True, slots=True)
class MeterSpec:
    position: str
    error: CtErrorModel = field(default_factory=CtErrorModel)

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise ValueError(f"meter position {self.position!r} is not one of {', '.join(POSITIONS)}")


@dataclass(frozen=True, slots=True)
class HouseParams:
    site: Site = field(default_factory=Site)
    array: PvArray = field(default_factory=PvArray)
    weather: CloudModel | WeatherFile = field(default_factory=CloudModel)
    demand: DemandModel = field(default_factory=DemandModel)
    battery: BatteryParams = field(default_factory=BatteryParams)
    inverter: InverterParams = field(default_factory=InverterParams)
    inverter_ct: CtErrorModel = field(default_factory=CtErrorModel)
    meters: tuple[tuple[str, MeterSpec], ...] = (("grid", MeterSpec("grid")),)
    diverter: DiverterParams | None = None
    diverter_ct: CtErrorModel = field(default_factory=CtErrorModel)
    heat_pump: HeatPumpParams | None = None
    seed: int = 1
    # Days of PV/demand computed at once when the run reaches the end of what is precomputed.
    chunk_days: int = 2


class Series:
    """Minute arrays of PV (W), base demand (W) and air temperature, extended a chunk of days at a time."""

    def __init__(self, params: HouseParams) -> None:
        self._params = params
        self._file_index = _FileIndex(params.weather) if isinstance(params.weather, WeatherFile) else None
        self.t0_s = 0.0
        self.pv = np.zeros(0)
        self.load = np.zeros(0)
        self.temp = np.zeros(0)
        self.midnights: list[float] = []
        self._next_day: date | None = None

    @property
    def end_s(self) -> float:
        return self.t0_s + 60.0 * self.pv.size

    def start(self, first_day: date, days: int) -> None:
        self._next_day = first_day
        self.pv = np.zeros(0)
        self.load = np.zeros(0)
        self.temp = np.zeros(0)
        self.midnights = []
        zone = ZoneInfo(self._params.site.timezone)
        self.t0_s = datetime(first_day.year, first_day.month, first_day.day, tzinfo=zone).timestamp()
        self.extend(days)

    def extend(self, days: int) -> None:
        assert self._next_day is not None
        p = self._params
        first = self._next_day
        pv = pv_days(first, days, p.site, p.array, p.weather, self._file_index)
        local = pv.times.tz_convert(p.site.timezone)
        minute_of_day = (local.hour.to_numpy() * 60 + local.minute.to_numpy()) % MINUTES_PER_DAY
        ordinals = np.array([d.toordinal() for d in local.date], dtype=np.int64)
        load = np.empty(len(pv.times))
        for ordinal in np.unique(ordinals):
            mask = ordinals == ordinal
            load[mask] = p.demand.day(date.fromordinal(int(ordinal)))[minute_of_day[mask]]
        zone = ZoneInfo(p.site.timezone)
        for offset in range(days):
            d = first + timedelta(days=offset)
            self.midnights.append(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp())
        self.pv = np.concatenate([self.pv, pv.pv_w])
        self.load = np.concatenate([self.load, load])
        self.temp = np.concatenate([self.temp, pv.temp_c])
        self._next_day = first + timedelta(days=days)


@dataclass(slots=True)
class Totals:
    """True energies since the start (Wh), AC-bus side unless named otherwise."""

    pv_wh: float = 0.0
    load_wh: float = 0.0
    import_wh: float = 0.0
    export_wh: float = 0.0
    charge_wh: float = 0.0
    discharge_wh: float = 0.0
    diverter_wh: float = 0.0
    # Battery energy that went into the diverter: what the battery gave beyond the house's other
    # loads once PV had covered them (PV first, then the battery, then the grid).
    battery_to_diverter_wh: float = 0.0
    heat_pump_wh: float = 0.0
    unserved_wh: float = 0.0
    curtailed_wh: float = 0.0


@dataclass(slots=True)
class InverterCounters:
    """The inverter's own daily and lifetime counters, from its CTs (registers 0x0218..0x0223)."""

    pv_today_wh: float = 0.0
    export_today_wh: float = 0.0
    import_today_wh: float = 0.0
    load_today_wh: float = 0.0
    pv_total_wh: float = 0.0
    export_total_wh: float = 0.0
    import_total_wh: float = 0.0
    load_total_wh: float = 0.0
    minutes_generating_today: float = 0.0
    hours_generating_total: float = 0.0

    def new_day(self) -> None:
        self.pv_today_wh = self.export_today_wh = self.import_today_wh = self.load_today_wh = 0.0
        self.minutes_generating_today = 0.0


@dataclass(slots=True)
class Flows:
    """True flows of the last step (W), AC-bus sign: load = pv + grid + battery."""

    pv_w: float = 0.0
    load_w: float = 0.0
    base_w: float = 0.0
    grid_w: float = 0.0
    battery_w: float = 0.0
    diverter_w: float = 0.0
    heat_pump_w: float = 0.0
    temp_c: float = 10.0
    eps: bool = False
    blackout: bool = False


@dataclass(slots=True)
class House:
    params: HouseParams
    start: datetime
    now_s: float = field(init=False)
    series: Series = field(init=False)
    battery: Battery = field(init=False)
    inverter: Inverter = field(init=False)
    inverter_ct: Ct = field(init=False)
    meters: dict[str, EnergyMeter] = field(init=False)
    meter_positions: dict[str, str] = field(init=False)
    diverter: Diverter | None = field(init=False)
    diverter_ct: Ct = field(init=False)
    heat_pump: HeatPump | None = field(init=False)
    flows: Flows = field(init=False)
    totals: Totals = field(init=False)
    counters: InverterCounters = field(init=False)
    grid_up: bool = True
    _midnight_i: int = field(init=False, default=0)
    _inverter_grid_w: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        p = self.params
        if self.start.tzinfo is None:
            raise ValueError(f"start {self.start!r} needs a time zone")
        self.now_s = self.start.timestamp()
        self.series = Series(p)
        local_day = self.start.astimezone(ZoneInfo(p.site.timezone)).date()
        self.series.start(local_day, p.chunk_days)
        self.battery = Battery(p.battery)
        self.inverter = Inverter(p.inverter)
        self.inverter.last_contact_s = self.now_s
        self.inverter_ct = Ct(p.inverter_ct, seed=p.seed * 1000 + 1)
        self.meters = {}
        self.meter_positions = {}
        for n, (name, spec) in enumerate(p.meters):
            self.meters[name] = EnergyMeter(Ct(spec.error, seed=p.seed * 1000 + 10 + n))
            self.meter_positions[name] = spec.position
        self.diverter = Diverter(p.diverter) if p.diverter else None
        self.diverter_ct = Ct(p.diverter_ct, seed=p.seed * 1000 + 2)
        self.heat_pump = HeatPump(p.heat_pump) if p.heat_pump else None
        self.flows = Flows()
        self.totals = Totals()
        self.counters = InverterCounters()
        self._midnight_i = self._next_midnight_index()

    # ---------------------------------------------------------------------------------------------
    @property
    def sim_time(self) -> datetime:
        return datetime.fromtimestamp(self.now_s, UTC)

    def _next_midnight_index(self) -> int:
        mids = self.series.midnights
        i = 0
        while i < len(mids) and mids[i] <= self.now_s:
            i += 1
        return i

    def _ensure(self, t: float) -> int:
        series = self.series
        while t >= series.end_s:
            series.extend(self.params.chunk_days)
        return int((t - series.t0_s) // 60.0)

    def step(self, dt_s: float) -> None:
        """Advance the house by ``dt_s`` seconds of simulated time."""
        t = self.now_s
        i = self._ensure(t)
        series = self.series
        pv = float(series.pv[i])
        base = float(series.load[i])
        temp = float(series.temp[i])
        diverter = self.diverter
        heat_pump = self.heat_pump
        div_w = diverter.power_w if diverter is not None else 0.0
        hp_w = heat_pump.power_w if heat_pump is not None else 0.0
        load = base + div_w + hp_w

        battery = self.battery
        inverter = self.inverter
        max_charge, max_discharge = battery.limits_w(dt_s)
        inverter.check_lease(t)
        previous = inverter.battery_w
        blackout = False
        eps = not self.grid_up
        if not eps:
            grid_seen = self.inverter_ct.read(load - pv - previous)
            setpoint = inverter.setpoint(grid_seen, dt_s, max_charge, max_discharge)
            actual = battery.apply(setpoint, dt_s)
            grid = load - pv - actual
            self._inverter_grid_w = grid_seen - self.inverter_ct.gain * (actual - previous)
        else:
            actual, pv, load, blackout = self._eps(pv, load, dt_s, max_charge, max_discharge)
            if blackout:
                div_w = hp_w = 0.0
            grid = 0.0
            self._inverter_grid_w = 0.0
        inverter.settle(actual, eps and not blackout)

        hours = dt_s / 3600.0
        tot = self.totals
        tot.pv_wh += pv * hours
        tot.load_wh += load * hours
        if grid >= 0:
            tot.import_wh += grid * hours
        else:
            tot.export_wh -= grid * hours
        if actual >= 0:
            tot.discharge_wh += actual * hours
        else:
            tot.charge_wh -= actual * hours
        tot.diverter_wh += div_w * hours
        if div_w > 0 and actual > 0:
            house_deficit = max(0.0, load - div_w - pv)
            tot.battery_to_diverter_wh += min(div_w, max(0.0, actual - house_deficit)) * hours
        tot.heat_pump_wh += hp_w * hours

        flows = self.flows
        flows.pv_w, flows.load_w, flows.base_w, flows.grid_w = pv, load, base, grid
        flows.battery_w, flows.diverter_w, flows.heat_pump_w = actual, div_w, hp_w
        flows.temp_c, flows.eps, flows.blackout = temp, eps, blackout

        for name, meter in self.meters.items():
            meter.integrate(self.position_w(self.meter_positions[name]), dt_s)
        self._count(pv, dt_s)

        t_next = t + dt_s
        if diverter is not None:
            hour = ((t - series.t0_s) / 3600.0) % 24.0
            diverter.update(self.diverter_ct.read(grid), dt_s, hour)
        if heat_pump is not None:
            heat_pump.update(temp, t_next)
        self.now_s = t_next
        mids = series.midnights
        if self._midnight_i < len(mids) and t_next >= mids[self._midnight_i]:
            self._midnight_i += 1
            self.counters.new_day()

    def _eps(
        self, pv: float, load: float, dt_s: float, max_charge: float, max_discharge: float
    ) -> tuple[float, float, float, bool]:
        """(battery, pv, load served, blackout) while islanded."""
        inverter = self.inverter
        hours = dt_s / 3600.0
        rated = inverter.params.rated_w
        can_give = min(rated, max_discharge)
        can_take = min(rated, max_charge)
        need = load - pv
        if not inverter.params.eps_enabled or inverter.faulted or need > can_give:
            # No grid to follow: the AC-coupled PV inverter trips and the house is dark.
            self.totals.unserved_wh += load * hours
            self.totals.curtailed_wh += pv * hours
            self.battery.apply(0.0, dt_s)
            return 0.0, 0.0, 0.0, True
        if need < -can_take:
            self.totals.curtailed_wh += (pv - (load + can_take)) * hours
            pv = load + can_take
            need = -can_take
        actual = self.battery.apply(need, dt_s)
        # The battery may have given less than asked (SoC floor): PV is held back to match.
        if actual != need:
            pv = load - actual
        return actual, pv, load, False

    def position_w(self, position: str) -> float:
        """True power of the last step where a meter is clamped (``POSITIONS``)."""
        f = self.flows
        if position == "grid":
            return f.grid_w
        if position == "pv":
            return f.pv_w
        if position == "load":
            return f.load_w
        if position == "battery":
            return f.battery_w
        if position == "diverter":
            return f.diverter_w
        return f.heat_pump_w

    def _count(self, pv: float, dt_s: float) -> None:
        c = self.counters
        hours = dt_s / 3600.0
        pv_read = pv * self.inverter_ct.gain if pv > 0 else 0.0
        grid_read = self._inverter_grid_w
        pv_wh = pv_read * hours
        c.pv_today_wh += pv_wh
        c.pv_total_wh += pv_wh
        if grid_read >= 0:
            c.import_today_wh += grid_read * hours
            c.import_total_wh += grid_read * hours
        else:
            c.export_today_wh -= grid_read * hours
            c.export_total_wh -= grid_read * hours
        load_wh = max(0.0, pv_read + grid_read + self.inverter.battery_w) * hours
        c.load_today_wh += load_wh
        c.load_total_wh += load_wh
        if pv > 0:
            c.minutes_generating_today += dt_s / 60.0
            c.hours_generating_total += hours

    # views for the device servers -----------------------------------------------------------
    @property
    def inverter_grid_w(self) -> float:
        """Grid power as the inverter's own CT reads it (import +)."""
        return self._inverter_grid_w

    @property
    def inverter_pv_w(self) -> float:
        return self.flows.pv_w * self.inverter_ct.gain if self.flows.pv_w > 0 else 0.0

    def grid_voltage_v(self) -> float:
        """Supply voltage: a daily swing plus the house's own drop/rise with its grid flow."""
        if not self.grid_up:
            return 0.0
        hour = ((self.now_s - self.series.t0_s) / 3600.0) % 24.0
        return 241.0 + 3.0 * math.cos(2 * math.pi * (hour - 3.0) / 24.0) - 0.0008 * self.flows.grid_w

    def grid_frequency_hz(self) -> float:
        if not self.grid_up:
            return 50.0
        return 50.0 + 0.05 * math.sin(self.now_s / 97.0) + 0.02 * math.sin(self.now_s / 13.0)


def start_of(value: str | date | datetime | None, timezone: str) -> datetime:
    """Parse a scenario/CLI start: a date (local midnight), an aware datetime, or None (now, UTC)."""
    if value is None:
        return datetime.now(UTC).replace(microsecond=0)
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, date):
        stamp = datetime(value.year, value.month, value.day)
    else:
        try:
            stamp = pd.Timestamp(value).to_pydatetime()
        except ValueError as exc:
            raise ValueError(f"start {value!r} is not a date or ISO datetime: {exc}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=ZoneInfo(timezone))
    return stamp
