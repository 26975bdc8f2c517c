"""A realistic synthetic day of fleet messages, for the dashboards test, the report and benchmarks.

One house at the seed site in March: PV on a clear-ish day with passing cloud, a spiky load
(kettle, oven, evening peak), a 10 kWh battery in self-use with the dispatcher's decisions and a
plan every 30 minutes, CT meters with a small gain error (so the balance residual is not zero),
modules and cells, write counters, availability and events. Deterministic for a given seed.

From 18:00 to 20:00 the inverter's own SoC reads 17 points under the BMS's (the seed's "app says
99 %, inverter says 82 %"), and the dispatcher's ``soc_disagreement`` events come from its own
check (``services.dispatcher.core.soc_check``) with the default thresholds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from services.dispatcher.core.soc_check import SocWatch, soc_event, watch_soc
from shared import messages as m
from shared import topics
from shared.config.dispatcher import DispatcherConfig
from shared.topics import Kind

# The inverter's SoC drift in the evening, points (the seed's 99 % against 82 %).
INVERTER_SOC_DRIFT_PCT = -17.0
DRIFT_HOURS = (18.0, 20.0)


def day_messages(
    site: str, start: datetime, *, step_s: int = 60, hours: float = 24.0, seed: int = 7
) -> Iterator[tuple[str, m.Message]]:
    """``(topic, message)`` in time order from ``start`` (UTC) for ``hours``."""
    rng = random.Random(seed)
    capacity_wh = 10_000.0
    soc = 45.0
    cloud = 1.0
    steps = int(hours * 3600 / step_s)
    plan_every = 1800 // step_s
    limits = DispatcherConfig()
    soc_watch = SocWatch()
    yield (
        topics.availability(site, Kind.INVERTER, "inverter1"),
        m.Availability(ts=start, state=m.AvailabilityState.ONLINE),
    )
    yield topics.availability(site, Kind.METER, "grid"), m.Availability(ts=start, state=m.AvailabilityState.ONLINE)
    for k in range(steps):
        ts = start + timedelta(seconds=k * step_s)
        hour = ts.hour + ts.minute / 60.0
        cloud = min(1.0, max(0.2, cloud + rng.gauss(0, 0.08)))
        pv = max(0.0, 3200.0 * math.sin(math.pi * (hour - 6.3) / 11.6)) * cloud if 6.3 < hour < 17.9 else 0.0
        load = 250.0 + (1800.0 if 17.5 < hour < 19.0 else 0.0) + (2800.0 if rng.random() < 0.02 else 0.0)
        want = load - pv
        battery = max(-3000.0, min(3000.0, want))
        if battery > 0 and soc <= 10.0:
            battery = 0.0
        if battery < 0 and soc >= 100.0:
            battery = 0.0
        soc = min(100.0, max(0.0, soc - battery * step_s / 3600.0 / capacity_wh * 100.0))
        grid = load - pv - battery
        drift = INVERTER_SOC_DRIFT_PCT if DRIFT_HOURS[0] <= hour < DRIFT_HOURS[1] else 0.0
        inverter_soc = round(min(100.0, max(0.0, soc + drift)), 2)
        yield (
            topics.inverter_state(site, "inverter1"),
            m.InverterState(
                ts=ts,
                device="inverter1",
                model="sofar_me3000sp",
                running_state=m.RunningState.DISCHARGING if battery > 0 else m.RunningState.CHARGING,
                battery_power_w=round(battery, 1),
                battery_soc_pct=inverter_soc,
                battery_voltage_v=51.0,
                battery_temp_c=18.0,
                grid_power_w=round(grid, 1),
                grid_voltage_v=240.0 + rng.gauss(0, 1),
                grid_frequency_hz=50.0,
                load_power_w=round(load, 1),
                pv_power_w=round(pv, 1),
                pv_energy_today_wh=0.0,
                export_energy_today_wh=0.0,
                import_energy_today_wh=0.0,
                load_energy_today_wh=0.0,
                pv_energy_total_wh=0.0,
                export_energy_total_wh=0.0,
                import_energy_total_wh=0.0,
                load_energy_total_wh=0.0,
            ),
        )
        for role, power in ((m.MeterRole.GRID, grid * 1.01 + 4.0), (m.MeterRole.PV, pv * 0.99)):
            yield (
                topics.meter_state(site, role.value),
                m.MeterState(
                    ts=ts,
                    device=role.value,
                    model="eastron_sdm120",
                    role=role,
                    power_w=round(power, 1),
                    voltage_v=240.0,
                    current_a=abs(power) / 240.0,
                    frequency_hz=50.0,
                    import_energy_wh=0.0,
                    export_energy_wh=0.0,
                    below_accurate_range=abs(power) < 60.0,
                ),
            )
        modules = tuple(
            m.ModuleState(
                index=i,
                voltage_v=51.0,
                current_a=-battery / 51.0 / 2,
                soc_pct=round(soc, 2),
                temps_c=(17.0 + i, 18.0 + i),
                cells=tuple(m.CellState(voltage_v=3.30 + soc / 1000.0 + 0.002 * c * (i + 1)) for c in range(4)),
                cell_spread_mv=6.0 * (i + 1),
            )
            for i in range(2)
        )
        yield (
            topics.battery_state(site, "bms1"),
            m.BatteryState(
                ts=ts,
                device="bms1",
                voltage_v=51.0,
                current_a=battery / 51.0,
                power_w=round(battery, 1),
                soc_pct=round(soc, 2),
                soh_pct=98.0,
                cell_min_v=3.30,
                cell_max_v=3.32,
                cell_spread_mv=12.0,
                temp_min_c=17.0,
                temp_max_c=19.0,
                limits=m.BatteryLimits(charge_current_a=50.0, discharge_current_a=50.0),
                modules=modules,
            ),
        )
        soc_watch, verdict = watch_soc(
            soc_watch,
            inverter_soc,
            ts,
            round(soc, 2),
            ts,
            threshold_pct=limits.soc_disagreement_pct,
            after_s=limits.soc_disagreement_s,
            max_apart_s=limits.stale_after_s,
        )
        if verdict is not None:
            yield (
                topics.event(site, Kind.DISPATCHER, topics.DISPATCHER_DEVICE),
                soc_event(verdict, inverter="inverter1", bms="bms1", threshold_pct=limits.soc_disagreement_pct, ts=ts),
            )
        if k % 5 == 0:
            yield (
                topics.dispatcher_decision(site),
                m.DispatcherDecision(
                    ts=ts,
                    mode="auto",
                    # By day a plan is tracked with commands; by night the inverter runs its own
                    # self-use (handed back: the power is only what it is expected to do).
                    setpoints=m.Setpoints(
                        inverter_mode=(m.CommandMode.CHARGE if battery < 0 else m.CommandMode.DISCHARGE)
                        if pv > 0
                        else m.CommandMode.SELF_USE,
                        battery_power_w=round(battery, 1),
                    ),
                    commanding=pv > 0,
                    reason="plan_track" if pv > 0 else ("reserve_floor" if soc < 12 else "self_use"),
                    numbers={"soc_pct": round(soc, 2), "soc_inverter_pct": inverter_soc, "soc_bms_pct": round(soc, 2)},
                    soc_source="bms",
                    soc_device="bms1",
                ),
            )
        if k % plan_every == 0:
            plan_steps = tuple(
                m.PlanStep(
                    start=ts + timedelta(minutes=30 * i),
                    import_price_per_kwh=0.30,
                    export_price_per_kwh=0.15,
                    pv_forecast_w=pv,
                    load_forecast_w=load,
                    battery_power_w=0.0,
                    grid_power_w=0.0,
                    soc_pct_end=round(min(100.0, max(0.0, soc + i)), 2),
                    intent=m.Intent.SELF_USE,
                )
                for i in range(4)
            )
            yield (
                topics.dispatcher_plan(site),
                m.Plan(ts=ts, step_s=1800, soc_pct_start=round(soc, 2), steps=plan_steps, expected_cost=1.0),
            )
        if k % 60 == 0:
            yield (
                topics.inverter_counters(site, "inverter1"),
                m.WriteCounters(
                    ts=ts, device="inverter1", day=ts.date(), writes={"passive": k // 60}, budget_per_day=500
                ),
            )
            yield (
                topics.recorder_state(site, "recorder"),
                m.RecorderStatus(ts=ts, recorder="recorder", backend="influxdb-v1", backlog_points=rng.randint(0, 5)),
            )
            yield (
                topics.event(site, Kind.INVERTER, "inverter1"),
                m.Event(ts=ts, level=m.EventLevel.INFO, code="write_verified", message="setpoint verified"),
            )


def day_start(day: str = "2026-03-10") -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)
