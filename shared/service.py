"""How every service starts: parse the common flags, load config, set up logging, connect the
bus with the service's last will, run, and stop cleanly on SIGTERM (Docker) or Ctrl-C.

A service module provides ``async def run(cfg, bus) -> None`` and calls
``service_main("inverter-bridge", run, argv)`` from its ``main``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer

from shared import clock, topics
from shared.bus import Bus
from shared.cli import typer_app
from shared.clock import FollowedClock
from shared.config import ConfigError, ConfigProblem, OngridConfig, config_source, load_config
from shared.logs import get_logger, setup_logging
from shared.messages import SimTruth

ServiceRun = Callable[[OngridConfig, Bus], Awaitable[None]]
# Checks a service can make of its configuration before it connects to anything; raises ConfigProblem.
ServiceCheck = Callable[[OngridConfig], object]

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file. Default: $ONGRID_CONFIG, else ./ongrid.yaml when present.",
        show_default=False,
    ),
]
LogLevelOption = Annotated[str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING, ERROR.")]


def load_or_exit(config: Path | None) -> OngridConfig:
    """Load the config or print why not and exit with status 2 (a usage error, not a crash)."""
    try:
        return load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def config_exit(config: Path | None, problem: ConfigProblem) -> typer.Exit:
    """Say, on one line, which file, key and value a service cannot run with; status 2."""
    typer.echo(f"error: {config_source(config)}: {problem}", err=True)
    return typer.Exit(2)


async def run_until_stopped(main: Awaitable[None]) -> None:
    """Run ``main`` until it returns or a stop signal arrives."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    task = asyncio.ensure_future(main)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task not in done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    else:
        task.result()


async def follow_simulator_clock(cfg: OngridConfig, bus: Bus, wait_s: float = 30.0) -> None:
    """Install a clock that follows the simulator's, and wait (bounded) until it has been heard."""
    follower = FollowedClock()
    heard = asyncio.Event()

    async def on_truth(_topic: str, truth: SimTruth) -> None:
        follower.update(truth.sim_time, truth.wall_time or truth.ts, truth.speed)
        heard.set()

    bus.subscribe(topics.simulator_truth(cfg.site), SimTruth, on_truth)
    clock.install(follower)
    log = get_logger("clock")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(heard.wait(), wait_s)
    if follower.synced:
        log.info("following the simulator's clock: %s at %.0fx", follower.now().isoformat(), follower.speed)
    else:
        log.warning("no simulator clock heard in %.0f s; using wall time until it appears", wait_s)


async def _serve(name: str, run: ServiceRun, cfg: OngridConfig, **bus_options: object) -> None:
    async with Bus(cfg.mqtt, site=cfg.site, service=name, **bus_options) as bus:  # type: ignore[arg-type]
        if cfg.clock == "simulator":
            await follow_simulator_clock(cfg, bus)
        await run(cfg, bus)


def service_main(
    name: str,
    run: ServiceRun,
    argv: list[str] | None = None,
    *,
    help_text: str | None = None,
    bus_options: Callable[[OngridConfig], dict[str, object]] | None = None,
    check: ServiceCheck | None = None,
) -> None:
    """The ``main`` of a long-running service. ``bus_options(cfg)`` may ask for a persistent session.

    Every configuration error ends the process with status 2 and one message naming the file, the
    key and the value, never a traceback: a validation error at load, a ``ConfigProblem`` from
    ``check(cfg)`` (before connecting, so a missing broker cannot hide it) or from ``run``.
    """

    # Plain tracebacks: they end up in container logs and journald, not on a colour terminal.
    app = typer_app(help_text or f"Run the ongrid {name}.")

    @app.command()
    def start(config: ConfigOption = None, log_level: LogLevelOption = None) -> None:
        cfg = load_or_exit(config)
        setup_logging(name, log_level or cfg.log_level, cfg.log_format)
        log = get_logger(name)
        try:
            if check is not None:
                check(cfg)
        except ConfigProblem as problem:
            raise config_exit(config, problem) from None
        log.info("starting (site=%s, broker=%s:%d)", cfg.site, cfg.mqtt.host, cfg.mqtt.port)
        options = bus_options(cfg) if bus_options else {}
        try:
            asyncio.run(run_until_stopped(_serve(name, run, cfg, **options)))
        except KeyboardInterrupt:
            pass
        except ConfigProblem as problem:
            raise config_exit(config, problem) from None
        except Exception:
            # The supervisor (Docker's restart policy, systemd) restarts us; say why we died first.
            log.exception("crashed")
            raise typer.Exit(1) from None
        log.info("stopped")

    app(args=sys.argv[1:] if argv is None else argv, prog_name=f"ongrid {name}", standalone_mode=True)
