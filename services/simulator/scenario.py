"""From the ``simulator:`` config section to the physics parameters of a house."""

from __future__ import annotations

from pathlib import Path

from shared.config.simulator import CtErrorSection, SimulatorConfig

from .physics.battery import BatteryParams, WeakModule
from .physics.demand import DEFAULT_APPLIANCES, DemandModel
from .physics.house import HouseParams, MeterSpec
from .physics.inverter import InverterParams
from .physics.loads import DiverterParams, HeatPumpParams
from .physics.meters import CtErrorModel
from .physics.pv import UK_MONTHLY_CLEARNESS, CloudModel, PvArray, Site, WeatherFile


def ct_model(section: CtErrorSection) -> CtErrorModel:
    return CtErrorModel(
        accuracy_pct=section.accuracy_pct,
        floor_w=section.floor_w,
        noise_w=section.noise_w,
        starting_current_a=section.starting_current_a,
        wander_w=section.wander_w,
    )


def house_params(cfg: SimulatorConfig, *, seed: int | None = None, chunk_days: int = 2) -> HouseParams:
    """Every physics parameter of the scenario; ``seed`` overrides ``cfg.seed`` (the CLI's --seed)."""
    seed = cfg.seed if seed is None else seed
    loc = cfg.location
    weather: CloudModel | WeatherFile
    if cfg.weather.kind == "file":
        path = Path(cfg.weather.path)
        if not path.is_file():
            raise ValueError(f"simulator.weather.path: no such file {str(path)!r}")
        weather = WeatherFile(path, cfg.weather.format)
    else:
        clearness = cfg.weather.monthly_clearness or UK_MONTHLY_CLEARNESS
        weather = CloudModel(seed=seed, monthly_clearness=clearness)
    d = cfg.demand
    appliances = tuple(
        _with_rate(a, d.appliances_per_day[a.name]) if a.name in d.appliances_per_day else a  # type: ignore[index]
        for a in DEFAULT_APPLIANCES
    )
    b = cfg.battery
    weak = (
        WeakModule(
            index=b.weak_module.index,
            capacity_pct=b.weak_module.capacity_pct,
            fade_pct_per_cycle=b.weak_module.fade_pct_per_cycle,
            low_cell_mv=b.weak_module.low_cell_mv,
        )
        if b.weak_module
        else None
    )
    inv = cfg.inverter
    return HouseParams(
        site=Site(loc.latitude, loc.longitude, loc.altitude_m, loc.timezone),
        array=PvArray(
            kwp=cfg.pv.kwp,
            tilt_deg=cfg.pv.tilt_deg,
            azimuth_deg=cfg.pv.azimuth_deg,
            losses_pct=cfg.pv.losses_pct,
            ac_limit_w=cfg.pv.ac_limit_w,
            gamma_pdc=cfg.pv.gamma_pdc,
        ),
        weather=weather,
        demand=DemandModel(
            seed=seed,
            annual_kwh=d.annual_kwh,
            always_on_w=d.always_on_w,
            fridge_w=d.fridge_w,
            appliances=appliances,
        ),
        battery=BatteryParams(
            modules=b.modules,
            module_ah=b.module_ah,
            module_model=b.module_model,
            nominal_module_v=b.nominal_module_v,
            charge_efficiency=b.charge_efficiency,
            discharge_efficiency=b.discharge_efficiency,
            max_charge_w=b.max_charge_w,
            max_discharge_w=b.max_discharge_w,
            min_soc_pct=b.min_soc_pct,
            max_soc_pct=b.max_soc_pct,
            initial_soc_pct=b.initial_soc_pct,
            module_charge_limit_a=b.module_charge_limit_a,
            module_discharge_limit_a=b.module_discharge_limit_a,
            ambient_c=b.ambient_c,
            initial_cycles=b.initial_cycles,
            weak=weak,
            seed=seed,
        ),
        inverter=InverterParams(
            rated_w=inv.rated_w,
            passive_timeout_s=inv.passive_timeout_s,
            ramp_w_per_s=inv.ramp_w_per_s,
            eps_enabled=inv.eps_enabled,
            self_use_band_w=inv.self_use_band_w,
        ),
        inverter_ct=ct_model(inv.ct),
        meters=tuple((m.id, MeterSpec(m.position, ct_model(m.error))) for m in cfg.meters),
        diverter=(
            DiverterParams(
                rated_w=cfg.diverter.rated_w,
                tank_kwh=cfg.diverter.tank_kwh,
                margin_w=cfg.diverter.margin_w,
                start_w=cfg.diverter.start_w,
                reaction_s=cfg.diverter.reaction_s,
                daily_use_kwh=cfg.diverter.daily_use_kwh,
            )
            if cfg.diverter
            else None
        ),
        diverter_ct=ct_model(cfg.diverter.ct) if cfg.diverter else CtErrorModel(),
        heat_pump=(
            HeatPumpParams(
                heat_loss_w_per_k=cfg.heat_pump.heat_loss_w_per_k,
                indoor_c=cfg.heat_pump.indoor_c,
                heating_off_c=cfg.heat_pump.heating_off_c,
                min_w=cfg.heat_pump.min_w,
                max_w=cfg.heat_pump.max_w,
            )
            if cfg.heat_pump
            else None
        ),
        seed=seed,
        chunk_days=chunk_days,
    )


def _with_rate(appliance, per_day: float):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return replace(appliance, per_day=per_day)
