"""``ongrid``: one command for every service and tool.

Each service owns its flags: ``ongrid <service> ARGS`` hands ARGS to ``services.<service>``'s
``main(argv)``, exactly as ``python -m services.<service> ARGS`` does, so the two never drift.
Imports are lazy so that ``ongrid --help`` and ``ongrid status`` start fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

from shared.cli import typer_app

# name shown to users -> (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "inverter-bridge": ("services.inverter_bridge.__main__", "Poll the inverter, publish its state, execute commands."),
    "bms-bridge": ("services.bms_bridge.__main__", "Read the battery BMS (Pylontech RS485) and publish it."),
    "meter-bridge": ("services.meter_bridge.__main__", "Read CT/energy meters (Eastron SDM) and publish them."),
    "dispatcher": ("services.dispatcher.__main__", "Plan and control the battery and flexible loads."),
    "recorder": ("services.recorder.__main__", "Store every reading in InfluxDB (or the embedded store)."),
    "simulator": ("services.simulator.__main__", "Run the simulated house on the devices' real protocols."),
    "simulate": ("services.simulator.__main__", "Same as 'simulator'."),
    "backtest": ("services.backtest.__main__", "Replay load/PV data: what would a battery save?"),
    "report": ("services.recorder.report.__main__", "Render the dashboards' views to PNG and HTML."),
    "status": ("services.status", "Show the fleet's availability and latest readings."),
    "ha-discovery": ("services.discovery", "Publish one service's Home Assistant discovery, clear its stale configs."),
    "demo": ("services.devtools.demo", "Run the seed house with every service and show it live."),
}

app = typer_app(
    "ongrid: home-battery controller. Every service is also 'python -m services.<name>'.", no_args_is_help=True
)


def _delegate(name: str, module: str, help_text: str) -> None:
    def command(ctx: typer.Context) -> None:
        try:
            target = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # services.devtools is left out of the runtime image (.dockerignore).
            if exc.name is None or not module.startswith(exc.name):
                raise
            typer.echo(f"error: 'ongrid {name}' is a development tool, not installed here ({module})", err=True)
            raise typer.Exit(2) from None
        target.main(list(ctx.args))

    command.__doc__ = help_text
    settings = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
    app.command(name, context_settings=settings, add_help_option=False, help=help_text)(command)
    alias = name.replace("-", "_")
    if alias != name:
        app.command(alias, context_settings=settings, add_help_option=False, hidden=True)(command)


for _name, (_module, _help) in COMMANDS.items():
    _delegate(_name, _module, _help)


def main(argv: list[str] | None = None) -> None:
    app(args=sys.argv[1:] if argv is None else argv, prog_name="ongrid")


if __name__ == "__main__":
    main()
