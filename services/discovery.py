"""``ongrid ha-discovery SERVICE``: publish one service's Home Assistant discovery, clear the stale
configs of its kind, and exit.

Each service does this itself at start. One that no longer runs cannot: the bms-bridge once the
last battery is CAN-only, the meter-bridge once no meter is left (both refuse to start with nothing
to read), so their entities would stay in HA, unavailable, for good. Run as that service's broker
user (in compose: ``docker compose run --rm bms-bridge ongrid ha-discovery bms-bridge``), this
announces what the config now implies for that service (nothing, then) and clears the rest.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from shared import homeassistant as ha
from shared.bus import Bus
from shared.cli import typer_app
from shared.config import OngridConfig
from shared.service import ConfigOption, load_or_exit

# The services that announce entities.
SERVICES: tuple[str, ...] = tuple(sorted({ha.PUBLISHER[kind] for kind in ha.KINDS}))

app = typer_app("Publish one service's Home Assistant discovery and clear its stale configs.")


async def publish(cfg: OngridConfig, service: str, connect_s: float) -> ha.DiscoveryResult:
    kinds = tuple(kind for kind in ha.KINDS if ha.PUBLISHER[kind] == service)
    # announce=False: no online/offline of its own, so a running service of that name is not
    # reported offline when this exits.
    async with Bus(cfg.mqtt, site=cfg.site, service=service, announce=False) as bus:
        try:
            await bus.wait_connected(connect_s)
        except TimeoutError:
            raise ConnectionError(f"no broker at {cfg.mqtt.host}:{cfg.mqtt.port} within {connect_s:g} s") from None
        return await ha.publish_discovery(bus, cfg, kinds)


@app.command()
def discovery(
    service: Annotated[str, typer.Argument(help=f"Whose entities to publish (and clear): {', '.join(SERVICES)}.")],
    config: ConfigOption = None,
    connect_s: Annotated[float, typer.Option("--connect-s", help="Seconds to wait for the broker.")] = 10.0,
) -> None:
    if service not in SERVICES:
        choices = ", ".join(SERVICES)
        typer.echo(f"error: service {service!r} publishes no Home Assistant entities; one of {choices}", err=True)
        raise typer.Exit(2)
    cfg = load_or_exit(config)
    try:
        result = asyncio.run(publish(cfg, service, connect_s))
    except ConnectionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for topic in result.removed:
        typer.echo(f"removed {topic}")
    typer.echo(f"{service}: {len(result.published)} configs published, {len(result.removed)} removed")
    if not result.scanned:
        typer.echo("error: the retained configs could not be read back (broker user's ACL?): nothing removed", err=True)
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    app(args=sys.argv[1:] if argv is None else argv, prog_name="ongrid ha-discovery")
