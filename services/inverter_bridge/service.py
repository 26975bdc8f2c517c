"""The inverter-bridge: poll each inverter, publish its state, and execute commands safely.

I/O only: every decision is made by ``CommandPolicy`` (policy.py); this module reads registers,
has the inverter's control driver (drivers/) apply the setpoints it is told to apply, and
publishes what happened.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from shared import topics
from shared.bridge import DeviceAvailability, MapPoller, PollFailed
from shared.bridge.launcher import run_devices
from shared.bridge.schedule import run_every
from shared.bus import Bus
from shared.config import ConfigProblem, InverterConfig, OngridConfig
from shared.config.transports import ModbusTransport
from shared.logs import EpisodeLog, get_logger
from shared.messages import (
    AckStatus,
    BatteryState,
    CommandAck,
    Event,
    EventLevel,
    InverterCommand,
    InverterState,
    Message,
    utc_now,
)
from shared.modbus import Link, LinkError, close_links, open_link
from shared.registers import MapError, RegisterError, RegisterMap, load_map, to_inverter_state
from shared.topics import Kind

from .budget import BudgetFileError, BudgetStore, WriteBudget
from .drivers import ControlResult, DriverProblem, InverterDriver, driver_for
from .limits import InverterLimits, Setpoint, fresh_bms
from .policy import ActionKind, CommandPolicy, Decision, Verdict
from .verify import Verification

log = get_logger("inverter-bridge")

TICK_S = 0.2  # watchdog resolution: lease, heartbeat and verification deadlines
POLL_GROUPS = ("realtime", "energy")
INFO_GROUP = "info"
COMMAND_QUEUE = 64
IDENTITY_FIELDS = (
    "serial_number",
    "software_version",
    "hardware_version",
    "production_code",
    "battery_type",
    "battery_capacity_ah",
    "battery_max_charge_current_a",
    "battery_max_discharge_current_a",
)


def check_map(inverter: InverterConfig, key: str | None = None) -> RegisterMap:
    """The inverter's register map; ``key`` names the inverter in the config (``inverters.0``)."""
    key = key or f"inverters[{inverter.id}]"
    try:
        regmap = load_map(inverter.model)
    except MapError as exc:
        raise ConfigProblem(f"{key}.model", inverter.model, str(exc)) from None
    if regmap.kind != "inverter":
        raise ConfigProblem(f"{key}.model", inverter.model, f"map {regmap.name} is a {regmap.kind} map")
    return regmap


def check_transport(inverter: InverterConfig, key: str | None = None) -> ModbusTransport:
    transport = inverter.transport
    if not isinstance(transport, ModbusTransport):
        raise ConfigProblem(
            f"{key or f'inverters[{inverter.id}]'}.transport.kind",
            transport.kind,
            "does not carry Modbus; use modbus_tcp, modbus_rtu, rtu_over_tcp or solarman_v5",
        )
    return transport


def check_config(cfg: OngridConfig) -> None:
    """What can be known wrong before connecting: no inverter, an unknown map, a wrong transport."""
    if not cfg.inverters:
        raise ConfigProblem("inverters", [], "no inverter configured: nothing for the inverter-bridge to do")
    for i, inverter in enumerate(cfg.inverters):
        check_map(inverter, f"inverters.{i}")
        check_transport(inverter, f"inverters.{i}")


def budget_path(inverter: InverterConfig) -> Path:
    return Path(inverter.state_dir) / f"inverter-{inverter.id}-writes.json"


class InverterBridge:
    def __init__(
        self, cfg: InverterConfig, site: str, bus: Bus, link: Link, regmap: RegisterMap, driver: InverterDriver
    ) -> None:
        self.cfg = cfg
        self.site = site
        self.bus = bus
        self.link = link
        self.regmap = regmap
        self.driver = driver
        self.unit = cfg.transport.unit  # type: ignore[union-attr]
        # Every value InverterState carries is read on every poll (planned together: realtime and
        # energy share transactions), so a published state never holds a value older than its ts.
        self.poller = MapPoller(cfg.id, regmap, link, self.unit, {g: cfg.poll_s for g in POLL_GROUPS})
        self.availability = DeviceAvailability(log, f"inverter {cfg.id}", cfg.id)
        self.store = BudgetStore(budget_path(cfg))
        self.policy = CommandPolicy(
            cfg.id,
            InverterLimits.from_config(cfg, regmap),
            self._load_budget(),
            heartbeat_s=cfg.heartbeat_s,
            verify_s=cfg.verify_s,
        )
        self.battery: BatteryState | None = None
        self.identity_sent = False
        self._identity_read: tuple[str, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()
        self._commands: asyncio.Queue[InverterCommand] = asyncio.Queue(COMMAND_QUEUE)
        self._heartbeats = EpisodeLog(log, f"inverter {cfg.id} heartbeat", device=cfg.id)
        self._writes = EpisodeLog(log, f"inverter {cfg.id} writes", device=cfg.id)

    # -- topics ---------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return self.cfg.id

    def _topic(self, stream: str) -> str:
        return topics.topic(self.site, Kind.INVERTER, self.device, stream)

    async def _publish(self, topic: str, message: Message) -> bool:
        return await self.bus.publish(topic, message)

    async def _event(self, level: EventLevel, code: str, message: str, **details: Any) -> bool:
        event = Event(ts=utc_now(), level=level, code=code, message=message, device=self.device, details=details)
        return await self._publish(topics.event(self.site, Kind.INVERTER, self.device), event)

    async def _counters(self) -> None:
        budget = self.policy.budget
        budget.roll(utc_now().date())
        await self._publish(topics.inverter_counters(self.site, self.device), budget.counters(self.device, utc_now()))

    async def _ack(self, ack: CommandAck) -> None:
        await self._publish(topics.inverter_ack(self.site, self.device), ack)

    # -- set-up ---------------------------------------------------------------------------------
    def _load_budget(self) -> WriteBudget:
        today = utc_now().date()
        try:
            return self.store.load(self.cfg.write_budget_per_day, today)
        except BudgetFileError as exc:
            aside = self.store.quarantine()
            log.error("%s; moved to %s, counting from zero", exc, aside, extra={"device": self.cfg.id})
            return WriteBudget(self.cfg.write_budget_per_day, today)

    def subscribe(self) -> None:
        self.bus.subscribe(topics.inverter_command(self.site, self.device), InverterCommand, self._on_command)
        if self.cfg.battery is not None:
            self.bus.subscribe(topics.battery_state(self.site, self.cfg.battery), BatteryState, self._on_battery)

    async def _on_command(self, topic: str, command: InverterCommand) -> None:
        if "id" not in command.model_fields_set:
            # The model invents an id for a command built in Python; one that came without an id
            # cannot be matched to its answer by whoever sent it, so it is answered (by no id)
            # and not executed.
            await self._ack(
                CommandAck(
                    ts=utc_now(),
                    command_id=None,
                    device=self.device,
                    status=AckStatus.ERROR,
                    reason="invalid payload: id: field required (an answer could not be matched to a command "
                    "without one); not executed",
                )
            )
            return
        try:
            self._commands.put_nowait(command)
        except asyncio.QueueFull:
            await self._ack(
                CommandAck(
                    ts=utc_now(),
                    command_id=command.id,
                    device=self.device,
                    status=AckStatus.ERROR,
                    reason=f"busy: {COMMAND_QUEUE} commands already waiting",
                )
            )

    async def _on_battery(self, topic: str, state: BatteryState) -> None:
        self.battery = state

    async def run(self) -> None:
        await self._counters()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._poll_loop(), name=f"poll-{self.device}")
            group.create_task(self._command_loop(), name=f"commands-{self.device}")
            group.create_task(self._watchdog_loop(), name=f"watchdog-{self.device}")

    # -- polling --------------------------------------------------------------------------------
    async def poll_once(self) -> InverterState | None:
        ts = utc_now()
        try:
            values = await self.poller.poll(time.monotonic())
            state = to_inverter_state(self.regmap, values, device=self.device, ts=ts, control=self.policy.control)
        except (PollFailed, ValueError) as exc:
            await self._failed(exc)
            return None
        except Exception as exc:  # a bug must not stop polling, nor pass for a reading
            log.exception("unexpected error polling %s", self.device, extra={"device": self.device})
            await self._failed(exc)
            return None
        await self._publish(topics.inverter_state(self.site, self.device), state)
        online = self.availability.succeeded(ts)
        if online is not None:
            await self._publish(topics.availability(self.site, Kind.INVERTER, self.device), online)
        done = self.policy.observe(state)
        if done is not None:
            await self._verified(done, True, float(getattr(state, done.quantity)))
        if not self.identity_sent:
            await self._identity()
        return state

    async def _failed(self, error: Exception) -> None:
        offline = self.availability.failed(error, utc_now())
        if offline is not None:
            await self._publish(topics.availability(self.site, Kind.INVERTER, self.device), offline)

    async def _poll_loop(self) -> None:
        await run_every(self.cfg.poll_s, self.poll_once)

    async def _identity(self) -> None:
        """Once: what the inverter says it is (serial, firmware, battery set-up)."""
        if INFO_GROUP not in self.regmap.groups:
            self.identity_sent = True
            return
        if self._identity_read is None:
            try:
                values = await MapPoller(
                    self.device, self.regmap, self.link, self.unit, {INFO_GROUP: 3600.0}
                ).read_groups([INFO_GROUP])
            except PollFailed as exc:
                log.info("identity not read yet: %s", exc, extra={"device": self.device})
                return
            details = {k: values[k] for k in IDENTITY_FIELDS if k in values}
            name = f"{self.regmap.manufacturer} {self.regmap.models[0]}"
            self._identity_read = (f"{name} serial {details.get('serial_number', '?')}", details)
        # An event is not retained: one published before the bus has connected (the first poll can
        # beat the broker's CONNACK on a busy machine) is lost, so it counts as sent only once sent
        # (read once, published again after the next poll).
        message, details = self._identity_read
        self.identity_sent = await self._event(EventLevel.INFO, "inverter_identity", message, **details)

    # -- commands -------------------------------------------------------------------------------
    async def _command_loop(self) -> None:
        while True:
            command = await self._commands.get()
            async with self._lock:
                await self.execute(command)

    async def execute(self, command: InverterCommand) -> CommandAck:
        now = utc_now()
        bms = fresh_bms(self.battery, now)
        policy = self.policy
        decision = policy.decide(command, now, bms, bms_expected=self.cfg.battery is not None)
        if decision.verdict is Verdict.REPLAY:
            ack = policy.replay_ack(decision, now)
            await self._ack(ack)
            return ack
        if decision.verdict is Verdict.REJECT:
            policy.rejected(decision, now)
            ack = policy.ack(decision, now, AckStatus.REJECTED)
        elif decision.verdict is Verdict.SKIP:
            policy.skipped(decision, now)
            ack = policy.ack(decision, now, AckStatus.ACCEPTED)
        else:
            ack = await self._write_command(decision, now)
        self._save_budget()
        log.info(
            "command %s (%s) -> %s: %s",
            command.id,
            command.mode.value,
            ack.status.value,
            ack.reason or "ok",
            extra={"device": self.device},
        )
        await self._ack(ack)
        await self._counters()
        return ack

    async def _write_command(self, decision: Decision, now: Any) -> CommandAck:
        setpoint = decision.setpoint
        assert setpoint is not None
        self.policy.will_write(setpoint, now)
        try:
            result = await self._apply(setpoint)
        except (LinkError, RegisterError) as exc:
            self._writes.failure(exc)
            self.policy.write_failed(decision, now)
            return self.policy.ack(decision, now, AckStatus.ERROR, f"write failed: {exc}")
        self._writes.success()
        if not result.accepted:
            self.policy.written(decision, now, accepted=False)
            return self.policy.ack(decision, now, AckStatus.REJECTED, f"inverter refused: {result.reason}")
        self.policy.written(decision, now, accepted=True)
        return self.policy.ack(decision, now, AckStatus.ACCEPTED, f"wrote {setpoint.describe()}")

    async def _apply(self, setpoint: Setpoint) -> ControlResult:
        if setpoint.passive:
            return await self.driver.set_battery(setpoint)
        return await self.driver.self_use()

    def _save_budget(self) -> None:
        try:
            self.store.save(self.policy.budget)
        except OSError as exc:
            log.error("cannot save write counters to %s: %s", self.store.path, exc, extra={"device": self.device})

    # -- time: lease, heartbeat, verification ---------------------------------------------------
    async def _watchdog_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            async with self._lock:
                await self.tick()

    async def tick(self) -> None:
        now = utc_now()
        for action in self.policy.tick(now):
            if action.kind is ActionKind.HANDBACK:
                await self._handback(now)
            elif action.kind is ActionKind.HEARTBEAT:
                await self._heartbeat(now)
            elif action.verification is not None:
                last = self.policy.last_state
                observed = None if last is None else float(getattr(last, action.verification.quantity))
                await self._verified(action.verification, False, observed)

    async def _heartbeat(self, now: Any) -> None:
        try:
            await self.driver.heartbeat()
        except LinkError as exc:
            self._heartbeats.failure(exc)
            self.policy.heartbeat_sent(now, ok=False)
            return
        self._heartbeats.success()
        self.policy.heartbeat_sent(now, ok=True)

    async def _handback(self, now: Any) -> None:
        """The lease lapsed: back to the inverter's own self-use mode."""
        lease_until = self.policy.lease_until
        setpoint = self.policy.handback_setpoint()
        wrote, error = False, None
        if self.policy.handback_writes(now):
            self.policy.will_write(setpoint, now)
            try:
                result = await self._apply(setpoint)
                wrote = result.accepted
                if not result.accepted:
                    error = f"inverter refused: {result.reason}"
            except (LinkError, RegisterError) as exc:
                error = str(exc)
            self._save_budget()
        else:
            error = "write budget exhausted"
        self.policy.handed_back(now)
        how = (
            "0x42 auto 0 W written (self-use); heartbeats stopped"
            if wrote
            else f"could not write auto ({error}); heartbeats stopped, the inverter leaves passive mode "
            "on its own timeout"
        )
        log.warning("lease expired: %s", how, extra={"device": self.device})
        await self._event(
            EventLevel.WARNING,
            "watchdog_expired",
            f"no command renewed the lease: inverter handed back to self-use ({how})",
            lease_until=None if lease_until is None else lease_until.isoformat(),
            wrote=wrote,
            error=error,
        )
        await self._counters()

    async def _verified(self, verification: Verification, ok: bool, observed_w: float | None) -> None:
        ack = self.policy.verified_ack(verification, ok, observed_w, utc_now())
        if ack is not None:
            await self._ack(ack)
        await self._event(
            EventLevel.INFO if ok else EventLevel.WARNING,
            "setpoint_verified" if ok else "setpoint_not_reached",
            ack.reason if ack is not None and ack.reason else verification.quantity,
            command_id=verification.command_id,
            **verification.details(observed_w),
        )


def make_bridge(inverter: InverterConfig, site: str, bus: Bus, key: str | None = None) -> InverterBridge:
    """One inverter's bridge: its register map, its (shared) link and its control driver."""
    regmap = check_map(inverter, key)
    transport = check_transport(inverter, key)
    try:
        link = open_link(transport)
    except ValueError as exc:  # one serial port configured twice with different settings
        where = getattr(transport, "device", transport.kind)
        raise ConfigProblem(f"{key or f'inverters[{inverter.id}]'}.transport", where, str(exc)) from None
    try:
        driver = driver_for(regmap, link, transport.unit)
    except DriverProblem as exc:
        raise ConfigProblem(f"{key or f'inverters[{inverter.id}]'}.model", inverter.model, str(exc)) from None
    return InverterBridge(inverter, site, bus, link, regmap, driver)


def make_bridges(cfg: OngridConfig, bus: Bus) -> list[InverterBridge]:
    bridges = []
    for i, inverter in enumerate(cfg.inverters):
        battery = cfg.battery(inverter.battery) if inverter.battery is not None else None
        if battery is not None and not battery.has_bms_link:
            # CAN to the inverter only: no BMS state will come; the inverter's own limits stand.
            inverter = inverter.model_copy(update={"battery": None})
        bridges.append(make_bridge(inverter, cfg.site, bus, f"inverters.{i}"))
    return bridges


async def run(cfg: OngridConfig, bus: Bus) -> None:
    check_config(cfg)
    bridges = make_bridges(cfg, bus)  # a ConfigProblem ends the service with status 2 (shared.service)
    for bridge in bridges:
        bridge.subscribe()
    loops = {f"inverter-{bridge.device}": bridge.run for bridge in bridges}
    await run_devices(bus, cfg, Kind.INVERTER, loops, close=close_links)
