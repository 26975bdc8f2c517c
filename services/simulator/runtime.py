"""The simulator process: one house, its clock, every device endpoint, truth and fault control."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from services.simulator.servers.modbus import MapSource, RegisterContext, ServedEndpoint, ServeError, start_server
from shared import topics
from shared.config import ConfigProblem, OngridConfig
from shared.config.simulator import (
    ListenRtu,
    ListenSerial,
    ListenSolarman,
    ListenTcp,
    ListenTcpSerial,
    SimDevice,
    SimulatorConfig,
)
from shared.logs import get_logger
from shared.messages import SimTruth
from shared.ports import free_port
from shared.registers import Value, load_map

from .clock import SimClock
from .control import ControlServer
from .devices.eastron import meter_values
from .devices.faults import DeviceFaults, FaultySource, trace_packet
from .devices.pty import open_pty_pair
from .devices.sofar import custom_handler, inverter_values
from .devices.solarman import SolarmanLogger
from .physics.house import House, start_of
from .scenario import house_params

log = get_logger("simulator")

# Real seconds between physics catch-ups; steps themselves are fixed in simulated time.
TICK_S = 0.05
MAX_STEPS_PER_TICK = 20_000
WRITE_LOG_MAX = 100_000


@dataclass
class Simulator:
    cfg: OngridConfig
    speed: float | None = None
    start: str | None = None
    seed: int | None = None
    # Start with the clock held at its start until ``POST /clock {"run": true}`` (``--hold``).
    hold: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    sim: SimulatorConfig = field(init=False)
    house: House = field(init=False)
    clock: SimClock = field(init=False)
    faults: dict[str, DeviceFaults] = field(init=False, default_factory=dict)
    endpoints: dict[str, str] = field(init=False, default_factory=dict)
    control_port: int = field(init=False, default=0)
    write_seq: int = field(init=False, default=0)
    _bms_faults: dict[str, Any] = field(init=False, default_factory=dict)
    # Every 0x42/0x49 request any inverter endpoint received, in order: what actually reached the
    # inverter, for tests that must show no command outside limits got through (``GET /writes``).
    writes: deque[dict[str, Any]] = field(init=False, default_factory=lambda: deque(maxlen=WRITE_LOG_MAX))
    _closers: list[Callable[[], Any]] = field(init=False, default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.cfg.simulator is None:
            raise ConfigProblem("simulator", None, "no 'simulator:' section: the config is not a scenario file")
        self.sim = self.cfg.simulator
        speed = self.speed if self.speed is not None else self.sim.speed
        if speed <= 0:
            raise ValueError(f"--speed must be > 0, got {speed}")
        begin = start_of(self.start or self.sim.start, self.sim.location.timezone)
        self.house = House(house_params(self.sim, seed=self.seed), begin)
        self.clock = SimClock(begin, speed, held=self.hold)

    # -- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> Simulator:
        try:
            for i, device in enumerate(self.sim.devices):
                try:
                    await self._start_device(device)
                except OSError as exc:
                    raise _cannot_listen(f"simulator.devices.{i}.listen", device.listen, exc) from None
            control = ControlServer(self.sim.control.host, self.sim.control.port, self._control)
            try:
                self.control_port = await control.start()
            except OSError as exc:
                raise _cannot_listen("simulator.control", self.sim.control, exc) from None
            self._closers.append(control.close)
            self._announce(
                "control", "http", f"http://{self.sim.control.host}:{self.control_port}", "simulator"
            )
            # The clock starts when the devices are up, so no simulated time passes unserved.
            self.clock = SimClock(self.clock.start, self.clock.speed, held=self.clock.held)
            self._tasks.append(asyncio.create_task(self._physics(), name="sim-physics"))
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                result = closer()
                if asyncio.iscoroutine(result):
                    await result
        self._closers.clear()

    async def run_forever(self, bus: Any | None = None) -> None:
        """Serve until cancelled; publish ground truth on ``bus`` when one is given."""
        if bus is None:
            await asyncio.Event().wait()
            return
        topic = topics.simulator_truth(self.cfg.site)
        hp = self.sim.heat_pump
        if hp is not None and hp.switch_topic and self.house.heat_pump is not None:
            bus.subscribe_raw(hp.switch_topic, self._heat_pump_switch)
        while True:
            await bus.publish(topic, self.truth())
            await asyncio.sleep(self.sim.control.truth_interval_s)

    # -- physics ------------------------------------------------------------------------------
    async def _physics(self) -> None:
        step = self.sim.step_s
        house = self.house
        while True:
            target = self.clock.now_s()
            n = 0
            while house.now_s + step <= target and n < MAX_STEPS_PER_TICK:
                house.step(step)
                n += 1
            if n == MAX_STEPS_PER_TICK:
                await asyncio.sleep(0)  # catching up: let the device servers answer in between
            else:
                await asyncio.sleep(TICK_S)

    async def _heat_pump_switch(self, _topic: str, payload: bytes) -> None:
        """Its enable relay, as a Tasmota relay takes it: payload_on / payload_off, else ignored."""
        hp, pump = self.sim.heat_pump, self.house.heat_pump
        assert hp is not None and pump is not None
        text = payload.decode(errors="replace").strip()
        if text in (hp.payload_on, hp.payload_off):
            pump.enabled = text == hp.payload_on
            log.info("heat pump %s", "enabled" if pump.enabled else "disabled", extra={"topic": _topic})
        else:
            log.warning("heat pump switch: %r is neither %r nor %r", text, hp.payload_on, hp.payload_off)

    def truth(self) -> SimTruth:
        f = self.house.flows
        return SimTruth(
            ts=self.house.sim_time,
            sim_time=self.house.sim_time,
            wall_time=datetime.now(UTC),
            pv_w=round(f.pv_w, 1),
            load_w=round(f.load_w, 1),
            grid_w=round(f.grid_w, 1),
            battery_w=round(f.battery_w, 1),
            soc_pct=round(min(100.0, max(0.0, self.house.battery.soc_pct)), 3),
            diverter_w=round(f.diverter_w, 1),
            battery_to_diverter_wh=round(self.house.totals.battery_to_diverter_wh, 2),
            heat_pump_w=round(f.heat_pump_w, 1),
            # 0 while held: a follower extrapolating at the run's speed would race ahead of it.
            speed=self.clock.rate,
        )

    # -- devices ------------------------------------------------------------------------------
    def _announce(self, device: str, model: str, endpoint: str, protocol: str) -> None:
        self.endpoints[device] = endpoint
        line = {"device": device, "model": model, "protocol": protocol, "endpoint": endpoint}
        print(json.dumps(line), file=self.out, flush=True)

    def _source(self, device: SimDevice) -> tuple[RegisterContext, DeviceFaults]:
        faults = self.faults.setdefault(device.id, DeviceFaults())
        regmap = load_map(device.model)
        house = self.house
        if device.role == "inverter":
            serial = self.sim.inverter.serial
            def values() -> dict[str, Value]:
                read = inverter_values(house, serial)
                soc = read["battery_soc_pct"]
                if faults.soc_offset_pct and isinstance(soc, int | float):
                    read["battery_soc_pct"] = round(min(100.0, max(0.0, soc + faults.soc_offset_pct)))
                return read

            source = MapSource(regmap, values)
            handler = custom_handler(house)

            def custom(unit: int, function: int, register: int, value: int) -> int:
                if faults.exception is not None:
                    raise ServeError(faults.exception)
                status = handler(unit, function, register, value)
                self.writes.append(
                    {
                        "seq": self.write_seq,
                        "device": device.id,
                        "sim_time": house.sim_time.isoformat(),
                        "function": function,
                        "register": register,
                        "value": value,
                        "status": status & 0xFF,
                    }
                )
                self.write_seq += 1
                return status

            return RegisterContext({device.unit: FaultySource(source, faults)}, custom=custom), faults
        if device.role == "meter":
            meter_id, model = str(device.meter), device.model
            source = MapSource(regmap, lambda: meter_values(house, meter_id, model))
            return RegisterContext({device.unit: FaultySource(source, faults)}), faults
        raise ValueError(f"device {device.id!r}: role {device.role!r} is not served over Modbus")

    async def _start_device(self, device: SimDevice) -> None:
        listen = device.listen
        if device.role == "battery":
            await self._start_bms(device)
            return
        context, faults = self._source(device)
        hook = trace_packet(faults)
        served: ServedEndpoint
        if isinstance(listen, ListenTcp):
            served = await start_server(
                context, "modbus_tcp", host=listen.host, port=listen.port, trace_packet=hook
            )
            self._closers.append(served.close)
            self._announce(device.id, device.model, f"tcp://{listen.host}:{listen.port}", "modbus_tcp")
        elif isinstance(listen, ListenRtu):
            pair = await open_pty_pair(listen.device)
            self._closers.append(pair.close)
            served = await start_server(
                context, "modbus_rtu", device=str(pair.sim_end), baudrate=listen.baudrate, trace_packet=hook
            )
            self._closers.append(served.close)
            self._announce(device.id, device.model, str(pair.device), "modbus_rtu")
        elif isinstance(listen, ListenSolarman):
            # The logger's RS485 side: an RTU-over-TCP server on loopback that only the logger uses.
            # Its faults are applied by the logger itself, once, on the V5 side.
            rtu_port = free_port()
            served = await start_server(context, "rtu_over_tcp", host="127.0.0.1", port=rtu_port)
            self._closers.append(served.close)
            faults.idle_drop_s = listen.idle_timeout_s
            logger = SolarmanLogger(
                listen.host, listen.port, listen.logger_serial, "127.0.0.1", rtu_port, faults
            )
            port = await logger.start()
            self._closers.append(logger.close)
            self._announce(device.id, device.model, f"tcp://{listen.host}:{port}", "solarman_v5")
        else:
            raise ValueError(f"device {device.id!r}: listen kind {listen.kind!r} is for a battery BMS")

    async def _start_bms(self, device: SimDevice) -> None:
        from .devices import pylontech

        listen = device.listen
        faults = pylontech.PylontechFaults()
        endpoint: Any
        if isinstance(listen, ListenSerial):
            endpoint, where, baud = pylontech.PtyEndpoint(listen.device), listen.device, listen.baudrate
        elif isinstance(listen, ListenTcpSerial):
            endpoint = pylontech.TcpEndpoint(listen.host, listen.port)
            where, baud = f"tcp://{listen.host}:{listen.port}", listen.baudrate
        else:
            raise ValueError(f"device {device.id!r}: a battery listens on kind serial or tcp_serial")
        ready = asyncio.Event()
        task = asyncio.create_task(
            pylontech.serve(
                self.house.battery,
                endpoint,
                baudrate=baud,
                first_address=device.first_address,
                faults=faults,
                ready=lambda _where: ready.set(),
            ),
            name=f"bms-{device.id}",
        )
        self._tasks.append(task)
        waiter = asyncio.ensure_future(ready.wait())
        done, _ = await asyncio.wait({task, waiter}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task in done:
            task.result()  # the BMS server failed to start: raise its error here
        elif not ready.is_set():
            raise RuntimeError(f"BMS {device.id!r} did not come up on {where} within 5 s")
        self._bms_faults[device.id] = faults
        self._announce(device.id, device.model, where, "pylontech_rs485")

    # -- control channel ------------------------------------------------------------------------
    async def _control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if parts == ["truth"] and method == "GET":
            return 200, self._truth_json()
        if parts == ["clock"] and method == "GET":
            return 200, self._clock_json()
        if parts == ["clock"] and method == "POST":
            if not _bool(body, "run"):
                raise ValueError('a released clock cannot be held again: body must be {"run": true}')
            if self.clock.release():
                log.info("clock released at %s, running at x%g", self.clock.start.isoformat(), self.clock.speed)
            return 200, self._clock_json()
        if parts == ["writes"] and method == "GET":
            return 200, {"total": self.write_seq, "writes": list(self.writes)}
        if parts == ["faults"] and method == "GET":
            return 200, {
                **{k: v.as_dict() for k, v in self.faults.items()},
                **{k: _bms_dict(v) for k, v in self._bms_faults.items()},
            }
        if len(parts) >= 2 and parts[0] == "faults" and method == "POST":
            return self._set_faults(parts[1], parts[2:] == ["clear"], body)
        if parts == ["grid"] and method == "POST":
            up = _bool(body, "up")
            self.house.grid_up = up
            return 200, {"grid_up": up}
        if parts == ["inverter"] and method == "POST":
            self.house.inverter.faulted = _bool(body, "faulted")
            return 200, {"faulted": self.house.inverter.faulted}
        return 404, {"error": f"no {method} {path}"}

    def _set_faults(self, device: str, clear: bool, body: Any) -> tuple[int, Any]:
        if device in self._bms_faults:
            bms = self._bms_faults[device]
            if clear:
                bms.silent = bms.bad_checksum = bms.garbage = bms.out_of_range = False
                bms.negative_discharge_limit = False
            else:
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object of faults")
                aliases = {"crc": "bad_checksum"}
                for name, value in body.items():
                    attr = aliases.get(name, name)
                    if attr not in BMS_SWITCHES or not isinstance(value, bool):
                        raise ValueError(f"BMS fault {name!r}={value!r}: use {'/'.join(BMS_NAMES)}: bool")
                    setattr(bms, attr, value)
            return 200, _bms_dict(bms)
        faults = self.faults.get(device)
        if faults is None:
            return 404, {
                "error": f"no device {device!r}; devices: {sorted(self.faults) + sorted(self._bms_faults)}"
            }
        if clear:
            listen = next(d.listen for d in self.sim.devices if d.id == device)
            faults.clear(listen.idle_timeout_s if isinstance(listen, ListenSolarman) else None)
        else:
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object of faults")
            faults.update(body)
        return 200, faults.as_dict()

    def _clock_json(self) -> dict[str, Any]:
        return {
            "sim_time": self.clock.now().isoformat(),
            "start": self.clock.start.astimezone(UTC).isoformat(),
            "speed": self.clock.speed,
            "held": self.clock.held,
        }

    def _truth_json(self) -> dict[str, Any]:
        h = self.house
        truth = json.loads(self.truth().model_dump_json())
        truth["totals_wh"] = {k: round(getattr(h.totals, k), 2) for k in h.totals.__dataclass_fields__}
        truth["inverter"] = {
            "control": h.inverter.control.value,
            "passive_mode": h.inverter.passive_mode.value,
            "passive_value_w": h.inverter.passive_value_w,
            "running_state": h.inverter.running.name.lower(),
            "timeouts": h.inverter.timeouts,
            "commands_accepted": h.inverter.commands_accepted,
            "writes_received": h.inverter.writes_received,
        }
        truth["grid_up"] = h.grid_up
        truth["energy_wh"] = round(h.battery.energy_wh, 2)
        return truth


def _cannot_listen(key: str, listen: Any, exc: OSError) -> ConfigProblem:
    """A port (or pty path) the simulator cannot listen on, named by its key, as one line."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    port = getattr(listen, "port", None)
    if port is not None:
        return ConfigProblem(f"{key}.port", port, f"cannot listen on {getattr(listen, 'host', '')}:{port}: {reason}")
    return ConfigProblem(f"{key}.device", getattr(listen, "device", None), f"cannot open: {reason}")


def _bool(body: Any, key: str) -> bool:
    if not isinstance(body, dict) or not isinstance(body.get(key), bool):
        raise ValueError(f'body must be {{"{key}": true|false}}')
    return bool(body[key])


# The simulated BMS's switches as the control channel names them (name -> attribute).
BMS_NAMES = ("silent", "crc", "garbage", "out_of_range", "negative_discharge_limit")
BMS_SWITCHES = ("silent", "bad_checksum", "garbage", "out_of_range", "negative_discharge_limit")


def _bms_dict(faults: Any) -> dict[str, Any]:
    return {name: getattr(faults, attr) for name, attr in zip(BMS_NAMES, BMS_SWITCHES, strict=True)}

