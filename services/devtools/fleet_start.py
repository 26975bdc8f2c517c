"""Start an accelerated simulated day only once every service is online.

At 600x a service that takes 6 s to import pandas and HiGHS on a busy machine misses an hour of
the day. So the simulator is started with its clock held (``--hold``), the services are started,
and the clock is released (``POST /clock``) once each service has said ``online`` on its retained
availability topic. One way for the demo, the end-to-end and fault tests and the benchmarks.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from shared import topics
from shared.bus import Bus
from shared.config import MqttConfig
from shared.messages import Availability, AvailabilityState

__all__ = ["ONLINE_TIMEOUT_S", "NotOnline", "release_clock", "service_name", "start_when_online", "wait_online"]

# Generous: a service imports its libraries in seconds on a quiet machine and in tens of seconds
# on a 2-core machine under a load of 20; only one that never comes up should end the run.
ONLINE_TIMEOUT_S = 180.0


class NotOnline(RuntimeError):
    """Services that did not come online (announced names, in the order asked for)."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing


def service_name(module: str) -> str:
    """The name a service announces itself under: ``services.inverter_bridge`` -> ``inverter-bridge``."""
    return module.rsplit(".", 1)[-1].replace("_", "-")


async def wait_online(
    mqtt: MqttConfig,
    site: str,
    services: Iterable[str],
    *,
    timeout: float = ONLINE_TIMEOUT_S,
    dead: Callable[[], dict[str, int]] = dict,
    report: Callable[[str, float], None] | None = None,
) -> None:
    """Wait until every service in ``services`` (announced names) has a retained ``online``.

    ``dead()`` names processes that have exited (name -> status): one of them ends the wait at
    once. ``report(service, seconds)`` is told when each comes online. Raises ``NotOnline``
    naming every service not online within ``timeout`` seconds.
    """
    wanted = list(services)
    online: set[str] = set()
    t0 = time.monotonic()

    async def on_availability(topic: str, message: Availability) -> None:
        name = topics.parse(topic).device
        if message.state is AvailabilityState.ONLINE and name not in online:
            online.add(name)
            if report is not None:
                report(name, time.monotonic() - t0)
        elif message.state is not AvailabilityState.ONLINE:
            online.discard(name)

    async with Bus(mqtt, site=site, service="fleet-start", announce=False) as bus:
        for name in wanted:
            bus.subscribe(topics.service_availability(site, name), Availability, on_availability)
        await bus.subscribed(timeout)
        while missing := [name for name in wanted if name not in online]:
            if exited := dead():
                ended = ", ".join(f"{name} (status {code})" for name, code in sorted(exited.items()))
                raise NotOnline(
                    f"{ended} exited before the simulated day started; waiting for {', '.join(missing)}", missing
                )
            if time.monotonic() - t0 > timeout:
                raise NotOnline(
                    f"{', '.join(missing)} never came online within {timeout:.0f} s (no retained 'online' on "
                    f"{topics.service_availability(site, missing[0])}); the simulated day was not started",
                    missing,
                )
            await asyncio.sleep(0.2)


def release_clock(control_url: str, timeout: float = 10.0) -> dict[str, Any]:
    """Let the simulator's held clock run (``POST /clock``); its clock as the simulator reports it."""
    request = urllib.request.Request(
        control_url.rstrip("/") + "/clock", data=json.dumps({"run": True}).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def start_when_online(
    mqtt: MqttConfig,
    site: str,
    services: Iterable[str],
    control_url: str,
    *,
    timeout: float = ONLINE_TIMEOUT_S,
    dead: Callable[[], dict[str, int]] = dict,
    report: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """``wait_online`` then ``release_clock``, from synchronous code; the simulator's clock."""
    asyncio.run(wait_online(mqtt, site, services, timeout=timeout, dead=dead, report=report))
    return release_clock(control_url)
