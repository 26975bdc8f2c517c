"""The live dispatcher: MQTT in, the pure core in the middle, commands and decisions out.

One cycle (on every grid-meter update, or inverter update when there is no grid meter):
latest states -> ``Snapshot`` -> ``control`` -> publish the decision (retained) -> an
``InverterCommand`` only when ``commands.command_due`` says so -> flexible-load switches that
changed. A planner task re-plans at start, every ``replan_minutes``, on a big forecast error and on
a new external forecast, solving in a worker thread so the cycle never waits for HiGHS. A tick
task (wall time) runs the cycle when inputs went silent, a lease needs renewing or a timed mode ran
out, so the failsafe never waits for the input that stopped.

Times: ``now`` is ``shared.messages.utc_now()`` (simulated time under ``clock: simulator``), read
here and passed into the core. Loop periods are wall seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from shared import topics
from shared.bus import Bus
from shared.config import ConfigProblem, OngridConfig
from shared.config.loads import HeatPumpLoad
from shared.config.tariff import Csv
from shared.energy.battery import BatteryModel
from shared.energy.tariff import Tariff, TariffError, parse_price_csv, tariff_from_config
from shared.homeassistant import announce
from shared.logs import get_logger
from shared.messages import (
    Availability,
    AvailabilityState,
    BatteryState,
    CommandAck,
    DispatcherMode,
    Event,
    EventLevel,
    Forecast,
    Intent,
    InverterState,
    MeterState,
    ModeRequest,
    Plan,
    utc_now,
)
from shared.topics import Kind

from . import modes
from .budgets import BudgetFileError, load_budgets, save_budgets, save_due
from .commands import AckLedger, Sent, build_command, command_due, handback_command
from .core.controller import ControlParams, Decision, Memory, control, diverter_guard_params
from .core.diverter_guard import GuardMemory
from .core.failsafe import stale_inputs
from .core.heat_pump import Budget
from .core.heat_pump_plan import plan_with_heat_pumps
from .core.planner import Schedule, ScheduleError, plan
from .core.replan import should_replan
from .core.snapshot import Snapshot
from .core.soc_check import SocWatch, soc_event, watch_soc
from .diverter_seen import DiverterFileError, load_seen, save_seen
from .highs import silence_highs_banner
from .history import History, HistoryFileError
from .inputs import HeatPumpPast, build_inputs, plan_error_pct
from .loads_io import switches

log = get_logger("dispatcher")

TICK_S = 0.5  # wall seconds between failsafe / renewal checks
PLAN_TICK_S = 1.0  # wall seconds between "is a plan due?" checks
RESTORE_WAIT_S = 5.0


@dataclasses.dataclass(frozen=True)
class Devices:
    inverter: str
    battery: str | None  # the battery whose BMS state is read; None without a BMS link
    grid_meter: str | None
    load_meters: Mapping[str, str]  # meter id -> load id


def devices(cfg: OngridConfig) -> Devices:
    """Which devices this dispatcher reads and commands (``dispatcher.inverter/battery/grid_meter``)."""
    d = cfg.dispatcher
    inverter = cfg.inverter(d.inverter)
    if inverter is None:
        if d.inverter:
            raise ConfigProblem("dispatcher.inverter", d.inverter, "is not among inverters[]: nothing to command")
        raise ConfigProblem("inverters", [], "no inverter configured: the dispatcher has nothing to command")
    battery = cfg.battery(d.battery or inverter.battery)
    if (d.battery or inverter.battery) and battery is None:
        key = "dispatcher.battery" if d.battery else f"inverters.{cfg.inverters.index(inverter)}.battery"
        raise ConfigProblem(key, d.battery or inverter.battery, "is not among batteries[]")
    if d.grid_meter is not None and d.grid_meter not in {m.id for m in cfg.meters}:
        raise ConfigProblem("dispatcher.grid_meter", d.grid_meter, "is not among meters[]")
    load_meters = {load.meter: load.id for load in cfg.loads if load.meter is not None}
    # A battery on CAN to the inverter only has no BMS state: its SoC is the inverter's, its limits
    # the configured ones (DESIGN.md "Safety and failure").
    bms = battery.id if battery is not None and battery.has_bms_link else None
    return Devices(inverter.id, bms, d.grid_meter, load_meters)


def battery_model(cfg: OngridConfig) -> BatteryModel:
    d = cfg.dispatcher
    inverter = cfg.inverter(d.inverter)
    battery = cfg.battery(d.battery or (inverter.battery if inverter else None))
    if battery is None:
        raise ConfigProblem(
            "batteries",
            [],
            "the dispatcher needs a battery (usable_kwh, limits, SoC bands) to plan; "
            "one on CAN to the inverter only needs no transport",
        )
    return BatteryModel.from_config(battery, inverter)


def read_tariff(cfg: OngridConfig) -> Tariff:
    """The tariff, CSV price files read; a file that cannot be read or parsed is a ConfigProblem."""
    texts: dict[str, str] = {}
    for what, kind in (("import", cfg.tariff.import_), ("export", cfg.tariff.export)):
        if not isinstance(kind, Csv):
            continue
        try:
            text = Path(kind.path).read_text()
            parse_price_csv(text, source=kind.path)
        except OSError as exc:
            raise ConfigProblem(f"tariff.{what}.path", kind.path, f"cannot read: {exc.strerror or exc}") from None
        except TariffError as exc:
            raise ConfigProblem(f"tariff.{what}.path", kind.path, str(exc)) from None
        texts[kind.path] = text
    return tariff_from_config(cfg.tariff, read_text=texts.__getitem__)


def check_config(cfg: OngridConfig) -> None:
    """What can be known wrong before connecting: disabled, unknown devices, no battery, a bad tariff."""
    if not cfg.dispatcher.enabled:
        raise ConfigProblem("dispatcher.enabled", False, "the dispatcher is disabled: nothing to do")
    devices(cfg)
    battery_model(cfg)
    read_tariff(cfg)


def history_path(cfg: OngridConfig) -> Path:
    return Path(cfg.dispatcher.state_dir) / f"dispatcher-{cfg.site}-history.json"


def heat_pump_history_path(cfg: OngridConfig, load_id: str) -> Path:
    return Path(cfg.dispatcher.state_dir) / f"dispatcher-{cfg.site}-heat_pump-{load_id}-history.json"


def diverter_path(cfg: OngridConfig) -> Path:
    return Path(cfg.dispatcher.state_dir) / f"dispatcher-{cfg.site}-diverter.json"


def budgets_path(cfg: OngridConfig) -> Path:
    return Path(cfg.dispatcher.state_dir) / f"dispatcher-{cfg.site}-heat_pump-budgets.json"


def _move_aside(path: Path) -> Path:
    aside = path.with_name(path.name + f".bad-{uuid.uuid4().hex[:6]}")
    with contextlib.suppress(OSError):
        path.rename(aside)
    return aside


def load_history(path: Path, step_s: int) -> History:
    try:
        return History.load(path, step_s)
    except HistoryFileError as exc:
        aside = _move_aside(path)
        log.error("%s; moved aside to %s, starting with no history", exc, aside)
        return History(step_s)


def combine(*parts: str | None) -> str | None:
    text = "; ".join(p for p in parts if p)
    return text[:1000] if text else None


class Dispatcher:
    def __init__(self, cfg: OngridConfig, bus: Bus, *, tariff: Tariff | None = None) -> None:
        self.cfg = cfg
        self.bus = bus
        self.site = cfg.site
        self.devices = devices(cfg)
        self.battery = battery_model(cfg)
        self.params = ControlParams.from_config(cfg, self.battery)
        self.tariff = tariff or read_tariff(cfg)
        d = cfg.dispatcher
        self.lease_s = d.lease_s
        self.step_s = d.step_minutes * 60
        self.history_path = history_path(cfg)
        self.history = load_history(self.history_path, self.step_s)
        # Each heat pump's draw per step: the planner plans it apart from the base load.
        self.heat_pumps = tuple(load for load in cfg.loads if isinstance(load, HeatPumpLoad))
        self.hp_history = {
            load.id: load_history(heat_pump_history_path(cfg, load.id), self.step_s) for load in self.heat_pumps
        }
        # Latest inputs.
        self.inverter: InverterState | None = None
        self.inverter_online: bool | None = None
        self.bms: BatteryState | None = None
        self.grid: MeterState | None = None
        self.load_meters: dict[str, MeterState] = {}
        self.external: dict[str, Forecast] = {}
        self.forecast_changed = False
        # Mode, plan, controller memory, what was sent.
        self.mode: DispatcherMode | None = None
        self._retained_mode: DispatcherMode | None = None
        self._retained_plan: Plan | None = None
        self._restoring = True
        self.schedule: Schedule | None = None
        self.plan_id: str | None = None
        self.last_plan_at: datetime | None = None
        self._solving: asyncio.Future[Any] | None = None
        # The heat pumps' budgets survive a restart: no second budget for the same night.
        self.budgets_path = budgets_path(cfg)
        budgets: tuple[Budget, ...] = ()
        if self.heat_pumps:
            try:
                budgets = load_budgets(self.budgets_path)
            except BudgetFileError as exc:
                log.error("%s; moved aside to %s, budgets start afresh", exc, _move_aside(self.budgets_path))
        # When a probe last found a diverter with no CT survives a restart too (services.dispatcher.
        # diverter_seen): a house known to have one probes a load's drop at once.
        self.diverter_path = diverter_path(cfg)
        self.guarded = diverter_guard_params(self.params.loads) is not None
        seen: datetime | None = None
        if self.guarded:
            try:
                seen = load_seen(self.diverter_path, utc_now())
            except DiverterFileError as exc:
                log.error("%s; moved aside to %s, the diverter not yet seen", exc, _move_aside(self.diverter_path))
        self.memory = Memory(budgets=budgets, diverter=GuardMemory(seen_at=seen))
        self._saved_budgets = budgets
        self._saved_seen = seen
        self.last_sent: Sent | None = None
        self.ledger = AckLedger()
        self.notes: list[str] = []
        self.published_loads: dict[str, bool] = {}
        self.last_decision: Decision | None = None
        self.decisions = 0
        self.commands_sent = 0
        self.soc_watch = SocWatch()
        self._lock = asyncio.Lock()

    # -- topics ------------------------------------------------------------------------------
    @property
    def event_topic(self) -> str:
        return topics.event(self.site, Kind.DISPATCHER, topics.DISPATCHER_DEVICE)

    async def _event(self, level: EventLevel, code: str, message: str, **details: Any) -> None:
        event = Event(ts=utc_now(), level=level, code=code, message=message[:1000], details=details)
        await self.bus.publish(self.event_topic, event)

    # -- start-up ----------------------------------------------------------------------------
    async def restore(self, timeout_s: float = RESTORE_WAIT_S) -> DispatcherMode:
        """Read the retained mode (and plan) before anything else, then publish the mode in force.

        The end of the retained messages is found with a marker the bus sends itself: the broker
        delivers one client's retained messages and its later publications in order.
        """
        marker = f"dispatcher-restore-{uuid.uuid4().hex}"
        done = asyncio.Event()

        async def on_marker(_topic: str, payload: bytes) -> None:
            if marker.encode() in payload:
                done.set()

        self.bus.subscribe(topics.mode_state(self.site), DispatcherMode, self._on_mode_state)
        self.bus.subscribe(topics.dispatcher_plan(self.site), Plan, self._on_plan)
        self.bus.subscribe_raw(self.bus.event_topic, on_marker)
        await self.bus.subscribed(timeout_s)
        await self.bus.publish(
            self.bus.event_topic,
            Event(ts=utc_now(), level=EventLevel.INFO, code="dispatcher_restore", message=marker),
        )
        try:
            await asyncio.wait_for(done.wait(), timeout_s)
        except TimeoutError:
            log.warning("retained mode not confirmed within %.0f s; starting from what arrived", timeout_s)
        self._restoring = False
        now = utc_now()
        self.mode = modes.restored(self._retained_mode, self.cfg.dispatcher.default_mode, now)
        if self._retained_plan is not None:
            with contextlib.suppress(ValueError, IndexError):
                self.schedule = Schedule.from_message(self._retained_plan)
                self.plan_id = self._retained_plan.id
        log.info(
            "mode %s (%s)%s",
            self.mode.mode.value,
            "restored" if self.mode is self._retained_mode else self.mode.set_by,
            ", previous plan restored" if self.schedule is not None else "",
            extra={"topic": topics.mode_state(self.site)},
        )
        await self.bus.publish(topics.mode_state(self.site), self.mode)
        return self.mode

    def subscribe(self) -> None:
        site, dev = self.site, self.devices
        self.bus.subscribe(topics.inverter_state(site, dev.inverter), InverterState, self._on_inverter)
        self.bus.subscribe(topics.availability(site, Kind.INVERTER, dev.inverter), Availability, self._on_availability)
        self.bus.subscribe(topics.inverter_ack(site, dev.inverter), CommandAck, self._on_ack)
        if dev.battery is not None:
            self.bus.subscribe(topics.battery_state(site, dev.battery), BatteryState, self._on_bms)
        if dev.grid_meter is not None:
            self.bus.subscribe(topics.meter_state(site, dev.grid_meter), MeterState, self._on_grid)
        for meter in dev.load_meters:
            self.bus.subscribe(topics.meter_state(site, meter), MeterState, self._on_load_meter)
        self.bus.subscribe(topics.mode_set(site), ModeRequest, self._on_mode_set)
        for name in ("pv", "load"):
            self.bus.subscribe(topics.forecast(site, name), Forecast, self._on_forecast)

    # -- handlers ----------------------------------------------------------------------------
    async def _on_mode_state(self, _topic: str, message: DispatcherMode) -> None:
        if self._restoring:
            self._retained_mode = message

    async def _on_plan(self, _topic: str, message: Plan) -> None:
        if self._restoring:
            self._retained_plan = message

    async def _on_inverter(self, _topic: str, state: InverterState) -> None:
        self.inverter = state
        await self._compare_soc()
        for load in self.heat_pumps:
            on = self.published_loads.get(load.id, False)
            meter = self.load_meters.get(load.id)
            # Its own CT; without one, the battery's discharge while it is on (the budget's own
            # approximation, docs/dispatcher.md), so the base load keeps whatever is not counted.
            draw = meter.power_w if meter is not None else (
                min(load.rated_power_w, max(0.0, state.battery_power_w)) if on else 0.0
            )  # fmt: skip
            self.hp_history[load.id].add_draw(state.ts, draw, on)
        if self.history.add(state.ts, state.load_power_w, state.pv_power_w):
            self._save_history()
        if self.devices.grid_meter is None:
            await self.cycle("inverter")

    async def _on_availability(self, _topic: str, message: Availability) -> None:
        online = message.state is AvailabilityState.ONLINE
        changed = online != self.inverter_online
        self.inverter_online = online
        if changed and not online:
            log.warning("inverter %s offline: %s", self.devices.inverter, message.reason or "no reason given")
            await self.cycle("inverter_offline")

    async def _on_bms(self, _topic: str, state: BatteryState) -> None:
        self.bms = state
        await self._compare_soc()

    async def _compare_soc(self) -> None:
        """Raise (once) an inverter and a BMS that disagree on the SoC for too long; clear it (once)."""
        inverter, bms, d = self.inverter, self.bms, self.cfg.dispatcher
        if inverter is None or bms is None:
            return
        self.soc_watch, verdict = watch_soc(
            self.soc_watch,
            inverter.battery_soc_pct,
            inverter.ts,
            bms.soc_pct,
            bms.ts,
            threshold_pct=d.soc_disagreement_pct,
            after_s=d.soc_disagreement_s,
            max_apart_s=d.stale_after_s,
        )
        if verdict is None:
            return
        event = soc_event(
            verdict, inverter=inverter.device, bms=bms.device, threshold_pct=d.soc_disagreement_pct, ts=utc_now()
        )
        if event.level is EventLevel.WARNING:
            log.warning(event.message, extra={"device": bms.device})
        else:
            log.info(event.message, extra={"device": bms.device})
        await self.bus.publish(self.event_topic, event)

    async def _on_grid(self, _topic: str, state: MeterState) -> None:
        self.grid = state
        await self.cycle("meter")

    async def _on_load_meter(self, topic: str, state: MeterState) -> None:
        load = self.devices.load_meters.get(state.device)
        if load is not None:
            self.load_meters[load] = state

    async def _on_forecast(self, _topic: str, forecast: Forecast) -> None:
        self.external[forecast.kind] = forecast
        if forecast.kind == "load" or self.cfg.dispatcher.pv_forecast == "external":
            self.forecast_changed = True
        log.info("external %s forecast: %d points from %s", forecast.kind, len(forecast.points), forecast.source)

    async def _on_ack(self, _topic: str, ack: CommandAck) -> None:
        problem = self.ledger.answer(ack)
        if problem is None:
            return
        text = problem.describe()
        self.notes.append(text)
        log.warning("%s", text, extra={"device": self.devices.inverter})
        code = "setpoint_not_reached" if ack.verified is False else f"command_{problem.status.value}"
        await self._event(
            EventLevel.WARNING, code, text, command_id=problem.command_id, status=problem.status.value
        )

    async def _on_mode_set(self, _topic: str, request: ModeRequest) -> None:
        now = utc_now()
        problem = modes.check_request(request, now)
        if problem is not None:
            log.warning("mode request refused: %s", problem, extra={"topic": topics.mode_set(self.site)})
            event = Event(
                ts=now,
                level=EventLevel.WARNING,
                code="mode_refused",
                message=f"mode {request.mode.value} refused: {problem}",
                topic=topics.mode_set(self.site),
            )
            await self.bus.publish(topics.event(self.site, Kind.DISPATCHER, topics.MODE_DEVICE), event)
            return
        await self._set_mode(modes.from_request(request, now))
        await self.cycle("mode")

    async def _set_mode(self, mode: DispatcherMode) -> None:
        previous = self.mode
        self.mode = mode
        log.info(
            "mode %s -> %s (%s)",
            previous.mode.value if previous else "-",
            mode.mode.value,
            mode.set_by,
            extra={"topic": topics.mode_state(self.site)},
        )
        await self.bus.publish(topics.mode_state(self.site), mode)

    # -- the cycle ---------------------------------------------------------------------------
    def snapshot(self, now: datetime) -> Snapshot | None:
        if self.inverter is None or self.mode is None:
            return None
        snap = Snapshot.from_messages(
            now,
            self.inverter,
            grid_meter=self.grid,
            battery=self.bms,
            load_meters=self.load_meters,
            mode=self.mode,
        )
        if self.devices.grid_meter is not None and self.grid is None:
            # A configured grid meter not heard from is missing, not replaced by the inverter's CT.
            snap = dataclasses.replace(snap, meter_at=None)
        return snap

    def _not_commanding(self, now: datetime, reason: str, detail: str) -> Decision:
        self.memory = dataclasses.replace(self.memory, commanding=False, at=now, setpoint_w=0.0)
        return Decision(
            mode=self.mode.mode.value if self.mode else self.cfg.dispatcher.default_mode,
            battery_w=0.0,
            command=None,
            intent=Intent.OFF,
            reason=reason,
            detail=detail,
            commanding=False,
        )

    async def cycle(self, trigger: str) -> Decision | None:
        async with self._lock:
            return await self._cycle(trigger)

    async def _cycle(self, trigger: str) -> Decision:
        now = utc_now()
        if self.mode is not None and modes.expired(self.mode, now):
            await self._set_mode(modes.default_mode(self.cfg.dispatcher.default_mode, now, set_by="expired"))
        snap = self.snapshot(now)
        if snap is None:
            decision = self._not_commanding(now, "stale_inputs", "no inverter state received yet")
        elif self.inverter_online is False:
            decision = self._not_commanding(now, "inverter_offline", f"inverter {self.devices.inverter} is offline")
        else:
            decision, self.memory = control(snap, self.schedule, self.memory, self.params)
            if self.heat_pumps and save_due(self._saved_budgets, self.memory.budgets):
                self._save_budgets()
            if self.guarded and self.memory.diverter.seen_at != self._saved_seen:
                self._save_seen()
        if decision.mode_finished and self.mode is not None:
            await self._set_mode(modes.default_mode(self.cfg.dispatcher.default_mode, now, set_by="finished"))
        sent = await self._command(decision, now)
        notes, self.notes = self.notes, []
        message = decision.to_message(now, self.plan_id)
        numbers = dict(message.numbers)
        if self.last_sent is not None:
            numbers["lease_s"] = self.last_sent.lease_s
        source: dict[str, Any] = {}
        if snap is not None and self.inverter is not None:
            # Which SoC the decision stands on, and both readings, so a person can see a disagreement.
            numbers["soc_inverter_pct"] = self.inverter.battery_soc_pct
            if self.bms is not None:
                numbers["soc_bms_pct"] = self.bms.soc_pct
            device = self.bms.device if snap.soc_source == "bms" and self.bms is not None else self.devices.inverter
            source = {"soc_source": snap.soc_source, "soc_device": device}
        message = message.model_copy(
            update={
                "detail": combine(decision.detail, f"command {sent}" if sent else None, *notes),
                "numbers": numbers,
                **source,
            }
        )
        await self.bus.publish(topics.dispatcher_decision(self.site), message)
        if decision.event is not None:
            # A diverter with no CT suspected of taking the battery's discharge, or the cap released.
            code, text = decision.event
            level = EventLevel.WARNING if code == "diverter_suspected" else EventLevel.INFO
            cap = decision.numbers.get("diverter_cap_w")
            await self._event(level, code, text, **({"cap_w": cap} if cap is not None else {}))
        await self._switch_loads(decision, now)
        self.last_decision = decision
        self.decisions += 1
        log.debug(
            "%s: %s %s %.0f W (%s)",
            trigger,
            decision.mode,
            decision.command.value if decision.command else "hand-back",
            decision.battery_w,
            decision.reason,
        )
        return decision

    async def _command(self, decision: Decision, now: datetime) -> str | None:
        why = command_due(self.last_sent, decision.command, decision.battery_w, now)
        if why is None:
            return None
        if decision.command is None:
            command = handback_command(now, self.lease_s, combine(decision.reason, decision.detail))
        else:
            command = build_command(decision.command, decision.battery_w, now, self.lease_s, decision.reason)
        ok = await self.bus.publish(topics.inverter_command(self.site, self.devices.inverter), command)
        if not ok:
            log.warning(
                "command not sent (broker unreachable); retried next cycle", extra={"device": self.devices.inverter}
            )
            return None
        self.last_sent = Sent.of(command)
        self.ledger.sent(command)
        self.commands_sent += 1
        log.info(
            "command %s: %s %.0f W, lease %.0f s (%s)",
            why,
            command.mode.value,
            command.power_w,
            command.lease_s,
            decision.reason,
            extra={"device": self.devices.inverter},
        )
        return why

    async def _switch_loads(self, decision: Decision, now: datetime) -> None:
        if not self.cfg.loads or not decision.loads_on:
            return
        budgets = {b.load: b.used_wh for b in self.memory.budgets}
        left = {
            load.id: max(0.0, load.battery_budget_kwh * 1000.0 - budgets.get(load.id, 0.0))
            for load in self.cfg.loads
            if load.kind == "heat_pump"
        }
        power = {load: m.power_w for load, m in self.load_meters.items()}
        for switch in switches(
            tuple(self.cfg.loads),
            decision.loads_on,
            self.published_loads,
            now,
            power_w=power,
            budget_left_wh=left,
            reason=decision.reason,
            reasons=decision.load_reasons,
        ):
            load = switch.load
            await self.bus.publish(topics.load_state(self.site, load.id), switch.state)
            if load.switch_topic:
                await self.bus.publish_raw(load.switch_topic, switch.payload, qos=1)
            self.published_loads[load.id] = switch.on
            log.info("load %s %s", load.id, "on" if switch.on else "off", extra={"device": load.id})

    def _tick_due(self, now: datetime) -> str | None:
        """Why the cycle must run now although no input arrived, or None."""
        if self.mode is not None and modes.expired(self.mode, now):
            return "mode_expired"
        if self.last_decision is None:
            return "start"
        sent = self.last_sent
        if sent is not None and sent.mode.value != "self_use":
            if (now - sent.at).total_seconds() >= sent.lease_s / 3:
                return "renew"
            snap = self.snapshot(now)
            if snap is not None and stale_inputs(snap, self.params.stale_after_s) is not None:
                return "stale"
        return None

    async def tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            why = self._tick_due(utc_now())
            if why is not None:
                await self.cycle(why)

    # -- planning ----------------------------------------------------------------------------
    def plan_due(self, now: datetime) -> str | None:
        if self.inverter is None:
            return None
        error = plan_error_pct(self.schedule, self.history, now) if self.schedule is not None else None
        d = self.cfg.dispatcher
        reason = should_replan(now, self.last_plan_at, d.replan_minutes * 60, error, d.replan_forecast_error_pct)
        if reason is None and self.forecast_changed:
            reason = "forecast_update"
        return reason

    async def plan_once(self, reason: str) -> Schedule | None:
        """Solve in a worker thread; the controller keeps the previous plan meanwhile."""
        assert self.inverter is not None
        now = utc_now()
        self.last_plan_at = now
        self.forecast_changed = False
        soc = self.bms.soc_pct if self.bms is not None else self.inverter.battery_soc_pct
        limit = self.cfg.dispatcher.plan_time_limit_s
        budgets = {b.load: b for b in self.memory.budgets}
        args = (
            self.cfg,
            self.battery,
            self.tariff,
            self.history.copy(),
            now,
            soc,
            self.inverter.battery_power_w,
            self.external.get("pv"),
            self.external.get("load"),
            {
                load.id: HeatPumpPast(
                    self.hp_history[load.id].copy(),
                    budgets[load.id].used_wh if load.id in budgets else 0.0,
                    budgets[load.id].feeding if load.id in budgets else False,
                )
                for load in self.heat_pumps
            },
        )

        def solve() -> tuple[Schedule, str]:
            inputs, fc = build_inputs(*args)
            # Battery energy to a heat pump only as the dispatcher will give it (budget, floor).
            schedule = plan_with_heat_pumps(
                inputs, fc.heat_pumps, self.cfg.tariff.timezone, plan, time_limit_s=max(0.5, limit / 4)
            )
            return schedule, f"pv {fc.pv_source} (clearness {fc.clearness:.2f}), load {fc.load_source}"

        started = time.monotonic()
        self._solving = asyncio.ensure_future(asyncio.to_thread(solve))
        try:
            schedule, sources = await asyncio.wait_for(asyncio.shield(self._solving), limit)
        except TimeoutError:
            log.error("plan took longer than %.0f s; keeping the previous plan", limit)
            await self._event(EventLevel.ERROR, "plan_timeout", f"plan not ready within {limit:.0f} s", reason=reason)
            return None
        except (ScheduleError, TariffError, ValueError) as exc:
            log.error("planning failed: %s", exc)
            await self._event(EventLevel.ERROR, "plan_failed", str(exc), reason=reason)
            return None
        except Exception as exc:
            # A solver or data bug must not take the control loop down with it: keep the last plan.
            log.exception("planning failed unexpectedly")
            await self._event(EventLevel.ERROR, "plan_failed", f"{type(exc).__name__}: {exc}", reason=reason)
            return None
        message = schedule.to_message(now, reason)
        await self.bus.publish(topics.dispatcher_plan(self.site), message)
        self.schedule = schedule
        self.plan_id = message.id
        log.info(
            "plan (%s): %s, %d steps, expected cost %.2f, %s in %.0f ms (%.0f ms wall); %s",
            reason,
            schedule.solver,
            len(schedule.battery_w),
            schedule.cost,
            schedule.solver,
            schedule.solve_ms,
            (time.monotonic() - started) * 1000,
            sources,
        )
        return schedule

    async def plan_loop(self) -> None:
        while True:
            busy = self._solving is not None and not self._solving.done()
            reason = None if busy else self.plan_due(utc_now())
            if reason is not None:
                await self.plan_once(reason)
            await asyncio.sleep(PLAN_TICK_S)

    def _save_budgets(self) -> None:
        try:
            save_budgets(self.budgets_path, self.memory.budgets)
            self._saved_budgets = self.memory.budgets
        except OSError as exc:
            log.error("cannot save heat pump budgets to %s: %s", self.budgets_path, exc)

    def _save_seen(self) -> None:
        seen = self.memory.diverter.seen_at
        if seen is None:
            return
        try:
            save_seen(self.diverter_path, seen)
            self._saved_seen = seen
        except OSError as exc:
            log.error("cannot save when the diverter was seen to %s: %s", self.diverter_path, exc)

    def _save_history(self) -> None:
        paths = [(self.history, self.history_path)]
        paths += [(self.hp_history[load.id], heat_pump_history_path(self.cfg, load.id)) for load in self.heat_pumps]
        for history, path in paths:
            try:
                history.save(path)
            except OSError as exc:
                log.error("cannot save history to %s: %s", path, exc)

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.plan_loop(), name="dispatcher-plan")
                group.create_task(self.tick_loop(), name="dispatcher-tick")
        finally:
            self._save_history()
            if self.heat_pumps:
                self._save_budgets()


async def run(cfg: OngridConfig, bus: Bus) -> None:
    """The service: ``python -m services.dispatcher --config FILE``."""
    check_config(cfg)  # a ConfigProblem ends the service with status 2 (shared.service)
    dispatcher = Dispatcher(cfg, bus)
    silence_highs_banner()
    await dispatcher.restore()
    dispatcher.subscribe()
    await bus.subscribed()
    # Its own entities only (mode, decision): each bridge announces its devices.
    await announce(bus, cfg, Kind.DISPATCHER)
    await dispatcher.run()
