"""How every bridge runs its devices: one task per device, the Home Assistant discovery of its
kind beside them, and the links closed however they end.

The configuration has been checked before (``check_config``, by ``service_main``): what is left
is the same for the three bridges, so it is written once here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from shared.bus import Bus
from shared.config import OngridConfig
from shared.homeassistant import announce
from shared.topics import Kind

DeviceLoop = Callable[[], Coroutine[Any, Any, None]]


async def run_devices(
    bus: Bus,
    cfg: OngridConfig,
    kind: Kind,
    loops: Mapping[str, DeviceLoop],
    *,
    close: Callable[[], Awaitable[None]],
) -> None:
    """Run each device's loop as a task named by its key (``meter-grid``), and announce the
    devices of ``kind`` to Home Assistant, until a loop fails or the service is stopped; then
    ``close`` the links."""
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(announce(bus, cfg, kind), name="ha-discovery")
            for name, loop in loops.items():
                group.create_task(loop(), name=name)
    finally:
        await close()
