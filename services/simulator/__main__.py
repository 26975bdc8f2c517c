"""``python -m services.simulator --config FILE [--speed N] [--start DATE] [--seed S] [--hold]``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from shared.bus import Bus
from shared.cli import typer_app
from shared.config import ConfigProblem
from shared.logs import get_logger, setup_logging
from shared.service import config_exit, load_or_exit, run_until_stopped

from .runtime import Simulator

log = get_logger("simulator")


async def _run(sim: Simulator, mqtt: bool) -> None:
    async with sim:
        if not mqtt:
            await sim.run_forever()
            return
        async with Bus(sim.cfg.mqtt, site=sim.cfg.site, service="simulator") as bus:
            await sim.run_forever(bus)


def main(argv: list[str] | None = None) -> None:
    app = typer_app("Run the simulated house and serve its devices.")

    @app.command()
    def simulate(
        config: Annotated[Path | None, typer.Option("--config", "-c", help="Scenario YAML.")] = None,
        speed: Annotated[float | None, typer.Option(help="Simulated seconds per real second.")] = None,
        start: Annotated[
            str | None, typer.Option(help="Start date (local midnight) or ISO datetime.")
        ] = None,
        seed: Annotated[int | None, typer.Option(help="Seed for weather, demand and meter errors.")] = None,
        mqtt: Annotated[
            bool | None, typer.Option(help="Publish ground truth on MQTT (default: scenario).")
        ] = None,
        hold: Annotated[
            bool,
            typer.Option(
                help="Hold the clock at the start until POST /clock {\"run\": true} on the control channel "
                "(an accelerated run releases it once every service is online)."
            ),
        ] = False,
        log_level: Annotated[str | None, typer.Option("--log-level")] = None,
    ) -> None:
        cfg = load_or_exit(config)
        setup_logging("simulator", log_level or cfg.log_level, cfg.log_format)
        try:
            sim = Simulator(cfg, speed=speed, start=start, seed=seed, hold=hold)
        except ConfigProblem as problem:
            raise config_exit(config, problem) from None
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        use_mqtt = sim.sim.control.mqtt if mqtt is None else mqtt
        log.info(
            "simulating from %s at x%g (seed %s)%s",
            sim.clock.start.isoformat(),
            sim.clock.speed,
            sim.house.params.seed,
            ", clock held until released" if hold else "",
        )
        try:
            asyncio.run(run_until_stopped(_run(sim, use_mqtt)))
        except KeyboardInterrupt:
            pass
        except ConfigProblem as problem:  # e.g. a port another process holds: one line, status 2
            raise config_exit(config, problem) from None

    app(args=sys.argv[1:] if argv is None else argv, prog_name="ongrid simulate", standalone_mode=True)


if __name__ == "__main__":
    main()
