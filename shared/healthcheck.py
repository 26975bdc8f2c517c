"""Container healthcheck: is this service online, as the broker knows it?

``python -m shared.healthcheck [SERVICE]`` (SERVICE defaults to ``$ONGRID_SERVICE``) connects with
the service's own config and credentials, reads the retained availability the service's bus keeps
on ``ongrid/{site}/service/{service}/availability`` (``online`` after each connect, ``offline`` by
its last will or on a clean stop) and exits 0 when it says online, 1 otherwise, printing why.

It needs no hook in the service: a hung process whose connection drops gets its last will, and a
service that cannot reach the broker is unhealthy in the same way the rest of the fleet sees it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass

import aiomqtt
from pydantic import ValidationError

from shared import topics
from shared.config import ConfigError, OngridConfig, load_config
from shared.messages import Availability, AvailabilityState

SERVICE_ENV = "ONGRID_SERVICE"


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: bool
    reason: str


def judge(service: str, payload: bytes | None) -> Verdict:
    """Decide from the retained availability payload (``None``: nothing retained). Pure."""
    if payload is None:
        return Verdict(False, f"{service}: no availability retained on the broker (never connected?)")
    try:
        availability = Availability.model_validate_json(payload)
    except (ValidationError, ValueError) as exc:
        return Verdict(False, f"{service}: availability payload unreadable: {exc.__class__.__name__}")
    if availability.state is AvailabilityState.ONLINE:
        return Verdict(True, f"{service}: online since {availability.ts.isoformat()}")
    why = f" ({availability.reason})" if availability.reason else ""
    return Verdict(False, f"{service}: offline{why} since {availability.ts.isoformat()}")


async def read_availability(cfg: OngridConfig, service: str, timeout_s: float) -> bytes | None:
    """The retained availability payload of ``service``, or None when there is none in time."""
    mqtt = cfg.mqtt
    topic = topics.service_availability(cfg.site, service)
    async with aiomqtt.Client(
        mqtt.host,
        mqtt.port,
        username=mqtt.username,
        password=mqtt.password.get_secret_value() if mqtt.password else None,
        identifier=f"{mqtt.client_id_prefix}-health-{service}-{uuid.uuid4().hex[:6]}",
        timeout=timeout_s,
        tls_params=aiomqtt.TLSParameters(ca_certs=mqtt.tls.ca_file) if mqtt.tls.enabled else None,
        tls_insecure=mqtt.tls.insecure if mqtt.tls.enabled else None,
    ) as client:
        await client.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(timeout_s):
                async for message in client.messages:
                    if str(message.topic) == topic:
                        return bytes(message.payload)  # type: ignore[arg-type]
        except TimeoutError:
            return None
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    service = args[0] if args else os.environ.get(SERVICE_ENV)
    if not service:
        print(f"usage: python -m shared.healthcheck SERVICE (or set {SERVICE_ENV})", file=sys.stderr)
        return 2
    try:
        topics.check_name(service, "service")
        cfg = load_config()
    except (ConfigError, ValueError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    try:
        payload = asyncio.run(read_availability(cfg, service, timeout_s=5.0))
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        print(f"unhealthy: broker {cfg.mqtt.host}:{cfg.mqtt.port}: {exc}", file=sys.stderr)
        return 1
    verdict = judge(service, payload)
    print(("healthy: " if verdict.healthy else "unhealthy: ") + verdict.reason)
    return 0 if verdict.healthy else 1


if __name__ == "__main__":
    sys.exit(main())
