"""The meter-bridge: poll every configured meter, publish ``MeterState`` and availability.

Meters that share one RS485 adapter share one ``Link`` (``open_link``), so their polls take turns
on the bus. Each meter has its own loop, availability and failure episode: one dead meter on a
bus does not take the others offline.
"""

from __future__ import annotations

import time
from datetime import datetime

from shared import topics
from shared.bridge import DeviceAvailability, MapPoller, PollFailed
from shared.bridge.launcher import run_devices
from shared.bridge.schedule import run_every
from shared.bus import Bus
from shared.config import ConfigProblem, MeterConfig, OngridConfig
from shared.config.transports import ModbusTransport
from shared.logs import get_logger
from shared.messages import MeterState, utc_now
from shared.modbus import Link, close_links, open_link
from shared.registers import MapError, RegisterMap, Value, load_map, to_meter_state
from shared.topics import Kind

from .accuracy import AccuracySpec, assess, spec_for

log = get_logger("meter-bridge")


def build_state(
    meter: MeterConfig,
    regmap: RegisterMap,
    spec: AccuracySpec | None,
    values: dict[str, Value],
    ts: datetime,
) -> MeterState:
    """Pure: decoded values -> ``MeterState`` in the role's sign, with the accuracy verdict.

    The meter's import direction is taken to be its role's positive direction (grid: into the
    house; pv: out of the PV inverter; loads: into the load; battery: out of the battery), which
    is how the installation guide has them wired; ``invert`` corrects a meter or CT that is not.
    """
    state = to_meter_state(regmap, values, device=meter.id, ts=ts, role=meter.role, invert=meter.invert)
    if spec is None:
        return state
    verdict = assess(spec, state.power_w, state.current_a, state.voltage_v)
    return state.model_copy(
        update={"below_accurate_range": verdict.below_accurate_range, "uncertainty_w": round(verdict.uncertainty_w, 1)}
    )


class MeterBridge:
    def __init__(self, meter: MeterConfig, site: str, bus: Bus, link: Link, regmap: RegisterMap) -> None:
        self.meter = meter
        self.site = site
        self.bus = bus
        self.regmap = regmap
        self.spec = spec_for(regmap.name)
        unit = meter.transport.unit  # type: ignore[union-attr]
        # Every group is read on every poll, planned together: a published state never carries a
        # value (an energy counter) older than its timestamp.
        groups = [g for g in regmap.groups if regmap.readable_points({g})]
        self.poller = MapPoller(meter.id, regmap, link, unit, {g: meter.poll_s for g in groups})
        self.availability = DeviceAvailability(log, f"meter {meter.id}", meter.id)

    @property
    def device(self) -> str:
        return self.meter.id

    async def poll_once(self) -> MeterState | None:
        ts = utc_now()
        try:
            values = await self.poller.poll(time.monotonic())
            state = build_state(self.meter, self.regmap, self.spec, values, ts)
        except (PollFailed, ValueError) as exc:
            await self._failed(exc)
            return None
        except Exception as exc:  # a bug must not stop polling, nor pass for a reading
            log.exception("unexpected error polling %s", self.device, extra={"device": self.device})
            await self._failed(exc)
            return None
        await self.bus.publish(topics.meter_state(self.site, self.device), state)
        online = self.availability.succeeded(ts)
        if online is not None:
            await self.bus.publish(topics.availability(self.site, Kind.METER, self.device), online)
        return state

    async def _failed(self, error: Exception) -> None:
        offline = self.availability.failed(error, utc_now())
        if offline is not None:
            await self.bus.publish(topics.availability(self.site, Kind.METER, self.device), offline)

    async def run(self) -> None:
        await run_every(self.meter.poll_s, self.poll_once)


def check_meter(meter: MeterConfig, key: str) -> tuple[RegisterMap, ModbusTransport]:
    """The meter's register map and transport, or a ConfigProblem naming ``key`` (``meters.0``)."""
    try:
        regmap = load_map(meter.model)
    except MapError as exc:
        raise ConfigProblem(f"{key}.model", meter.model, str(exc)) from None
    if regmap.kind != "meter":
        raise ConfigProblem(f"{key}.model", meter.model, f"map {regmap.name} is an {regmap.kind} map")
    if not isinstance(meter.transport, ModbusTransport):
        raise ConfigProblem(
            f"{key}.transport.kind",
            meter.transport.kind,
            "does not carry Modbus; use modbus_rtu, modbus_tcp, rtu_over_tcp or solarman_v5",
        )
    return regmap, meter.transport


def check_config(cfg: OngridConfig) -> None:
    """What can be known wrong before connecting: no meter, an unknown map, a wrong transport."""
    if not cfg.meters:
        raise ConfigProblem("meters", [], "no meter configured: nothing for the meter-bridge to do")
    for i, meter in enumerate(cfg.meters):
        check_meter(meter, f"meters.{i}")


def make_bridges(cfg: OngridConfig, bus: Bus) -> list[MeterBridge]:
    bridges = []
    for i, meter in enumerate(cfg.meters):
        regmap, transport = check_meter(meter, f"meters.{i}")
        try:
            link = open_link(transport)
        except ValueError as exc:  # one serial port configured twice with different settings
            where = getattr(transport, "device", transport.kind)
            raise ConfigProblem(f"meters.{i}.transport", where, str(exc)) from None
        bridge = MeterBridge(meter, cfg.site, bus, link, regmap)
        if bridge.spec is None:
            log.warning(
                "no accuracy data for %s: readings are not marked below_accurate_range",
                regmap.name,
                extra={"device": meter.id},
            )
        bridges.append(bridge)
    return bridges


async def run(cfg: OngridConfig, bus: Bus) -> None:
    check_config(cfg)
    bridges = make_bridges(cfg, bus)  # a ConfigProblem ends the service with status 2 (shared.service)
    loops = {f"meter-{bridge.device}": bridge.run for bridge in bridges}
    await run_devices(bus, cfg, Kind.METER, loops, close=close_links)
