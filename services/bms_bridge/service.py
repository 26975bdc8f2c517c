"""The bms-bridge: poll every configured Pylontech stack, publish its state and availability."""

from __future__ import annotations

import functools

from shared.bridge.launcher import run_devices
from shared.bridge.schedule import run_every
from shared.bus import Bus
from shared.config import BatteryConfig, ConfigProblem, OngridConfig
from shared.logs import get_logger
from shared.messages import Event, EventLevel, utc_now
from shared.pylontech import PylontechError
from shared.pylontech.client import PylontechClient
from shared.topics import Kind

from .coordinator import BatteryCoordinator
from .poller import StackPoller, UnsupportedTransport, endpoint_for

log = get_logger("bms-bridge")
MODEL = "pylontech_rs485"


def make_pollers(batteries: tuple[BatteryConfig, ...]) -> list[StackPoller]:
    """One client per physical bus: stacks sharing a port share its client and so its lock."""
    clients: dict[str, PylontechClient] = {}
    pollers = []
    for battery in batteries:
        if battery.transport is None:
            log.info("battery %s: no transport (CAN to the inverter only): no BMS to read", battery.id)
            continue
        if battery.model != MODEL:
            log.warning("battery %s: model %r is not %s; not polled", battery.id, battery.model, MODEL)
            continue
        endpoint = endpoint_for(battery)
        client = clients.get(endpoint.key)
        if client is None:
            t = battery.transport
            assert t is not None
            client = clients[endpoint.key] = PylontechClient.for_endpoint(
                endpoint, timeout_s=t.timeout_s, retries=t.retries
            )
        pollers.append(StackPoller(battery, client))
    return pollers


async def poll_forever(bus: Bus, site: str, poller: StackPoller) -> None:
    battery = poller.battery
    coordinator = BatteryCoordinator(site, battery.id, log, model=battery.model)
    identity_sent = False

    async def poll_once() -> None:
        nonlocal identity_sent
        ts = utc_now()
        try:
            readings = await poller.read()
        except PylontechError as exc:
            outcome = coordinator.failed(exc, ts)
        except Exception as exc:  # a bug must not stop the other batteries or the next poll
            log.exception("unexpected error polling %s", battery.id, extra={"device": battery.id})
            outcome = coordinator.failed(exc, ts)
        else:
            outcome = coordinator.polled(readings, ts)
        for topic, message in outcome.publish:
            await bus.publish(topic, message)
        if outcome.state is not None and not identity_sent:
            identity_sent = await _send_identity(bus, coordinator, poller)

    await run_every(battery.poll_s, poll_once)


async def _send_identity(bus: Bus, coordinator: BatteryCoordinator, poller: StackPoller) -> bool:
    try:
        details = await poller.identity()
    except PylontechError as exc:
        log.info("BMS identity not read yet: %s", exc, extra={"device": coordinator.device})
        return False
    event = Event(
        ts=utc_now(),
        level=EventLevel.INFO,
        code="bms_identity",
        message=f"{details['manufacturer']} {details['device_name']} v{details['software_version']}",
        device=coordinator.device,
        details=details,
    )
    # Not retained: published before the bus has connected it is lost, so it is sent again after the next poll.
    return await bus.publish(coordinator.event_topic, event)


def check_config(cfg: OngridConfig) -> None:
    """What can be known wrong before connecting: a transport that cannot carry RS485, or nothing to read."""
    readable = 0
    for i, battery in enumerate(cfg.batteries):
        if battery.transport is None or battery.model != MODEL:
            continue
        try:
            endpoint_for(battery)
        except UnsupportedTransport as exc:
            raise ConfigProblem(f"batteries.{i}.transport.kind", battery.transport.kind, str(exc)) from None
        readable += 1
    if not readable:
        raise ConfigProblem(
            "batteries",
            [b.id for b in cfg.batteries],
            f"no battery with model {MODEL} and a transport (its RS485 link): nothing for the bms-bridge to read",
        )


async def run(cfg: OngridConfig, bus: Bus) -> None:
    check_config(cfg)  # a ConfigProblem ends the service with status 2 (shared.service)
    pollers = make_pollers(cfg.batteries)
    clients = {id(p.client): p.client for p in pollers}

    async def close() -> None:
        for client in clients.values():
            await client.close()

    loops = {f"bms-{p.battery.id}": functools.partial(poll_forever, bus, cfg.site, p) for p in pollers}
    await run_devices(bus, cfg, Kind.BMS, loops, close=close)
