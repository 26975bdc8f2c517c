"""What a client that connects now is handed: every retained message under a topic pattern, read
by a fresh MQTT client as Home Assistant reads its discovery configs at its start."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiomqtt

from services.devtools.localbroker import Broker


async def retained(broker: Broker, pattern: str, settle_s: float = 1.0) -> dict[str, dict[str, Any]]:
    """Topic -> JSON payload of each non-empty retained message under ``pattern`` (a cleared one,
    an empty payload, is absent), collected for ``settle_s``
    (a broker hands retained messages out at once on subscribing)."""
    found: dict[str, dict[str, Any]] = {}
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"ha-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(pattern, qos=1)
        try:
            async with asyncio.timeout(settle_s):
                async for message in client.messages:
                    if message.retain and message.payload:
                        found[str(message.topic)] = json.loads(bytes(message.payload))  # type: ignore[arg-type]
        except TimeoutError:
            pass
    return found
