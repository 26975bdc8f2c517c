"""A simulated day in one process: the simulator's house physics under the dispatcher's own planner
and controller, at the cadences the fleet reads the devices with.

What the live services do over MQTT is done here by direct calls, in simulated time: the house is
stepped every second; the grid meter is read every ``meter_s`` and each reading runs one control
cycle (``core.controller.control``), as the dispatcher does on every grid-meter update; the
inverter (battery power, SoC, load and PV for the history) every ``inverter_s``; the planner
re-plans every ``dispatcher.replan_minutes`` from the history the readings built. A command goes to
the simulated inverter when ``commands.command_due`` says so, clamped by the BMS as the inverter
bridge does, and heartbeats keep its lease. No broker, no ports: a day takes seconds, so a test can
judge the controller on a whole day (``services.recorder.control_figures``).

The demo runs the fleet at 60x while the bridges poll in wall seconds, so there the controller sees
the grid every 2 simulated minutes and the inverter every 5: ``meter_s=120, inverter_s=300``
reproduces what the demo's controller saw; ``meter_s=2, inverter_s=5`` is a real house.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from services.dispatcher.commands import Sent, build_command, command_due, handback_command
from services.dispatcher.core.controller import ControlParams, Memory, control
from services.dispatcher.core.planner import Schedule, plan
from services.dispatcher.core.snapshot import LoadReading, ModeState, Snapshot
from services.dispatcher.highs import silence_highs_banner
from services.dispatcher.history import History
from services.dispatcher.inputs import build_inputs
from services.simulator.physics.house import House, Totals
from services.simulator.physics.inverter import PassiveMode
from services.simulator.scenario import house_params
from shared.config import OngridConfig
from shared.energy.battery import BatteryModel
from shared.energy.tariff import tariff_from_config
from shared.messages import CommandMode

__all__ = ["DayTrace", "simulate_day"]

_PASSIVE = {
    CommandMode.CHARGE: PassiveMode.CHARGE,
    CommandMode.DISCHARGE: PassiveMode.DISCHARGE,
    CommandMode.STANDBY: PassiveMode.STANDBY,
}


@dataclass
class DayTrace:
    """One row per simulated second: the true flows, the setpoint in force, the plan step's powers."""

    times: list[datetime] = field(default_factory=list)
    grid_w: list[float] = field(default_factory=list)
    battery_w: list[float] = field(default_factory=list)
    soc_pct: list[float] = field(default_factory=list)
    setpoint_w: list[float] = field(default_factory=list)
    planned_battery_w: list[float] = field(default_factory=list)
    planned_grid_w: list[float] = field(default_factory=list)
    diverter_w: list[float] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    commands: int = 0
    # The house's true totals at the end of the run (Wh): ``battery_to_diverter_wh`` among them.
    totals: Totals | None = None

    def frame(self) -> pd.DataFrame:
        """Columns as ``services.recorder.stats.day_frame`` names them, indexed by time (UTC)."""
        return pd.DataFrame(
            {
                "grid_w": self.grid_w,
                "battery_w": self.battery_w,
                "soc_pct": self.soc_pct,
                "setpoint_w": self.setpoint_w,
                "planned_battery_w": self.planned_battery_w,
                "planned_grid_w": self.planned_grid_w,
            },
            index=pd.DatetimeIndex(self.times),
        )


def simulate_day(
    cfg: OngridConfig,
    start: datetime,
    *,
    hours: float = 24.0,
    meter_s: int = 2,
    inverter_s: int = 5,
    mode: ModeState | None = None,
    command_delay_s: int = 0,
    meter_offset_s: int = 0,
) -> DayTrace:
    """Run ``hours`` from ``start`` (UTC) with ``cfg`` (a scenario: fleet config plus simulator).

    ``command_delay_s``: simulated seconds from a decision to its write at the inverter (the bus and
    the bridge: tens of milliseconds, which the fleet at 120x stretches to seconds).
    ``meter_offset_s``: the grid meter is read ``meter_offset_s`` seconds into each ``meter_s``
    (the simulated loads step on the minute: a reading at 0 sees the second a load changed)."""
    silence_highs_banner()
    if cfg.simulator is None:
        raise ValueError("simulate_day needs a scenario: a config with a simulator section")
    house = House(house_params(cfg.simulator), start)
    inverter_cfg = cfg.inverter(cfg.dispatcher.inverter)
    battery_cfg = cfg.battery(cfg.dispatcher.battery or (inverter_cfg.battery if inverter_cfg else None))
    assert battery_cfg is not None, "the scenario needs batteries[]"
    battery = BatteryModel.from_config(battery_cfg, inverter_cfg)
    params = ControlParams.from_config(cfg, battery)
    tariff = tariff_from_config(cfg.tariff)
    d = cfg.dispatcher
    history = History(d.step_minutes * 60)
    mode = mode or ModeState()

    memory = Memory()
    schedule: Schedule | None = None
    planned_at: datetime | None = None
    last_sent: Sent | None = None
    setpoint = 0.0
    reading_w = reading_soc = reading_pv = 0.0
    # Flexible loads with their own CT in the config, read from the simulated meter of that id.
    load_meters = {load.id: load.meter for load in cfg.loads if load.meter is not None and load.meter in house.meters}
    inverter_at: datetime | None = None
    trace = DayTrace()
    pending: list[tuple[int, PassiveMode, float]] = []  # (due step, mode, W): writes on their way
    for k in range(int(hours * 3600)):
        while pending and pending[0][0] <= k:
            _, passive, power = pending.pop(0)
            house.inverter.command(passive, power, (start + timedelta(seconds=k)).timestamp())
        house.step(1.0)
        now = start + timedelta(seconds=k + 1)
        flows = house.flows
        if k % inverter_s == 0:
            reading_w, reading_soc, inverter_at = flows.battery_w, house.battery.soc_pct, now
            reading_pv = house.inverter_pv_w
            history.add(now, flows.load_w, flows.pv_w)
        if planned_at is None or (now - planned_at).total_seconds() >= d.replan_minutes * 60:
            inputs, _ = build_inputs(cfg, battery, tariff, history, now, reading_soc, reading_w)
            schedule, planned_at = plan(inputs, time_limit_s=5.0), now
        if k % meter_s == meter_offset_s % meter_s:
            charge_a, discharge_a = house.battery.bms_current_limits_a()
            volts = house.battery.params.nominal_module_v
            snap = Snapshot(
                now=now,
                soc_pct=reading_soc,
                battery_w=reading_w,
                grid_w=house.meters["grid"].ct.read(flows.grid_w),
                pv_w=reading_pv,
                charge_limit_w=charge_a * volts,
                discharge_limit_w=discharge_a * volts,
                mode=mode,
                inverter_at=inverter_at,
                meter_at=now,
                bms_at=now,
                loads=tuple(
                    LoadReading(name, house.meters[meter].ct.read(house.position_w(house.meter_positions[meter])))
                    for name, meter in load_meters.items()
                ),
            )
            decision, memory = control(snap, schedule, memory, params)
            trace.reasons[decision.reason] = trace.reasons.get(decision.reason, 0) + 1
            why = command_due(last_sent, decision.command, decision.battery_w, now)
            if why is not None:
                if decision.command is None:
                    command = handback_command(now, d.lease_s, decision.reason)
                    pending.append((k + 1 + command_delay_s, PassiveMode.AUTO, 0.0))  # the bridge's hand-back
                else:
                    command = build_command(decision.command, decision.battery_w, now, d.lease_s, decision.reason)
                    cap = snap.charge_limit_w if command.mode is CommandMode.CHARGE else snap.discharge_limit_w
                    power = min(command.power_w, cap if cap is not None else command.power_w)
                    pending.append((k + 1 + command_delay_s, _PASSIVE[command.mode], power))
                last_sent = Sent.of(command)
                trace.commands += 1
            # handed back, the inverter runs its own self-use: no setpoint to hold it against
            setpoint = decision.battery_w if decision.commanding else np.nan
        house.inverter.heartbeat(now.timestamp())
        step = schedule.index_at(now) if schedule is not None else None
        trace.times.append(now)
        trace.grid_w.append(flows.grid_w)
        trace.battery_w.append(flows.battery_w)
        trace.soc_pct.append(house.battery.soc_pct)
        trace.setpoint_w.append(setpoint)
        trace.diverter_w.append(flows.diverter_w)
        in_plan = schedule is not None and step is not None
        trace.planned_battery_w.append(float(schedule.battery_w[step]) if in_plan else np.nan)  # type: ignore[union-attr,index]
        trace.planned_grid_w.append(float(schedule.grid_w[step]) if in_plan else np.nan)  # type: ignore[union-attr,index]
    trace.totals = house.totals
    return trace
