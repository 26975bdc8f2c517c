"""One realistic instance of every payload model: for the AsyncAPI document, the docs and the
round-trip tests. A model added to the contract without an example here fails the tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from shared import messages as m

TS = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)


def _plan_steps() -> tuple[m.PlanStep, ...]:
    return tuple(
        m.PlanStep(
            start=TS + timedelta(minutes=30 * i),
            import_price_per_kwh=0.30,
            export_price_per_kwh=0.15,
            pv_forecast_w=1200.0,
            load_forecast_w=450.0,
            battery_power_w=-750.0,
            grid_power_w=0.0,
            soc_pct_end=55.0 + 3 * i,
            intent=m.Intent.CHARGE,
        )
        for i in range(2)
    )


EXAMPLES: dict[type[m.Message], m.Message] = {
    m.InverterState: m.InverterState(
        ts=TS,
        device="inverter1",
        model="sofar_me3000sp",
        running_state=m.RunningState.CHARGING,
        control=m.InverterControl.SELF_USE,
        battery_power_w=-1200.0,
        battery_soc_pct=54.0,
        battery_voltage_v=51.2,
        battery_current_a=-23.4,
        battery_temp_c=21.0,
        battery_cycles=412,
        grid_power_w=10.0,
        grid_voltage_v=241.3,
        grid_current_a=0.4,
        grid_frequency_hz=50.01,
        load_power_w=450.0,
        pv_power_w=1640.0,
        pv_energy_today_wh=5200.0,
        export_energy_today_wh=300.0,
        import_energy_today_wh=2100.0,
        load_energy_today_wh=6100.0,
        pv_energy_total_wh=10_452_000.0,
        export_energy_total_wh=1_201_000.0,
        import_energy_total_wh=5_020_000.0,
        load_energy_total_wh=12_900_000.0,
    ),
    m.InverterCommand: m.InverterCommand(
        ts=TS,
        id="c0ffee",
        mode=m.CommandMode.CHARGE,
        power_w=1500.0,
        lease_s=120.0,
        expires_at=TS + timedelta(seconds=60),
        reason="plan_track",
    ),
    m.CommandAck: m.CommandAck(
        ts=TS,
        command_id="c0ffee",
        device="inverter1",
        status=m.AckStatus.ACCEPTED,
        applied_mode=m.CommandMode.CHARGE,
        applied_power_w=-1500.0,
    ),
    m.BatteryState: m.BatteryState(
        ts=TS,
        device="battery1",
        voltage_v=51.2,
        current_a=-23.4,
        power_w=-1198.0,
        soc_pct=54.0,
        soh_pct=97.0,
        temp_min_c=19.5,
        temp_max_c=21.0,
        cycles=412,
        cell_min_v=3.405,
        cell_max_v=3.421,
        cell_spread_mv=16.0,
        limits=m.BatteryLimits(
            charge_voltage_v=53.2, discharge_voltage_v=44.5, charge_current_a=50.0, discharge_current_a=50.0
        ),
        modules=(
            m.ModuleState(
                index=0,
                voltage_v=51.2,
                current_a=-11.7,
                soc_pct=54.0,
                remaining_ah=27.0,
                full_ah=50.0,
                cycles=412,
                temps_c=(20.5, 21.0),
                cells=(m.CellState(voltage_v=3.41), m.CellState(voltage_v=3.42)),
                cell_spread_mv=10.0,
            ),
        ),
    ),
    m.MeterState: m.MeterState(
        ts=TS,
        device="grid",
        model="eastron_sdm120",
        role=m.MeterRole.GRID,
        power_w=-35.0,
        voltage_v=241.0,
        current_a=0.15,
        frequency_hz=50.0,
        power_factor=0.95,
        import_energy_wh=5_020_000.0,
        export_energy_wh=1_201_000.0,
        below_accurate_range=True,
        uncertainty_w=12.0,
    ),
    m.Availability: m.Availability(ts=TS, state=m.AvailabilityState.ONLINE),
    m.DispatcherDecision: m.DispatcherDecision(
        ts=TS,
        mode="auto",
        setpoints=m.Setpoints(inverter_mode=m.CommandMode.CHARGE, battery_power_w=-1500.0),
        reason="plan_track",
        detail="following the plan: charge in the off-peak window",
        numbers={"plan_battery_w": -1500.0, "soc_pct": 54.0},
        plan_id="p1",
    ),
    m.Plan: m.Plan(ts=TS, id="p1", step_s=1800, soc_pct_start=54.0, steps=_plan_steps(), expected_cost=1.23),
    m.ModeRequest: m.ModeRequest(ts=TS, mode=m.DispatcherModeName.FORCE_CHARGE, target_soc_pct=80.0),
    m.DispatcherMode: m.DispatcherMode(ts=TS, mode=m.DispatcherModeName.AUTO),
    m.DailyStats: m.DailyStats(
        ts=TS,
        day=date(2026, 1, 14),
        pv_wh=3100.0,
        load_wh=9200.0,
        import_wh=4100.0,
        export_wh=200.0,
        battery_charge_wh=4300.0,
        battery_discharge_wh=3900.0,
        self_sufficiency_pct=55.4,
        equivalent_cycles=0.39,
        reached_sunrise=True,
        soc_at_sunrise_pct=34.0,
        discharge_stop_pct=20.0,
        soc_min_pct=21.5,
        soc_max_pct=97.0,
        peak_discharge_wh=3600.0,
        export_by_cause_wh={"battery_full": 200.0},
        balance_residual_wh=12.0,
        cost=1.85,
        cost_without_battery=2.60,
        savings=0.75,
        samples=2880,
    ),
    m.Event: m.Event(
        ts=TS, level=m.EventLevel.WARNING, code="watchdog_expired", message="lease lapsed", device="inverter1"
    ),
    m.WriteCounters: m.WriteCounters(
        ts=TS, device="inverter1", day=date(2026, 1, 15), writes={"passive_charge": 12}, budget_per_day=1000
    ),
    m.LoadState: m.LoadState(ts=TS, load="immersion", kind="diverter", on=False, reason="battery_first"),
    m.Forecast: m.Forecast(
        ts=TS,
        kind="pv",
        points=(m.ForecastPoint(start=TS, power_w=1500.0),),
        source="forecast.solar",
    ),
    m.RecorderStatus: m.RecorderStatus(ts=TS, recorder="recorder", backend="influxdb-v1", points_written=10),
    m.SimTruth: m.SimTruth(
        ts=TS, sim_time=TS, pv_w=1640.0, load_w=450.0, grid_w=10.0, battery_w=-1200.0, soc_pct=54.0
    ),
}
