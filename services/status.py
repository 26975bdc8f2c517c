"""``ongrid status``: what the fleet says about itself, read from the broker's retained state."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from shared import messages as m
from shared import topics
from shared.bus import Bus
from shared.cli import typer_app
from shared.config import OngridConfig
from shared.contract import model_for_topic
from shared.service import ConfigOption, load_or_exit


@dataclass
class FleetView:
    """The latest message of every topic of one site, as a status display needs it."""

    site: str
    latest: dict[str, m.Message] = field(default_factory=dict)

    async def take(self, topic: str, message: m.Message) -> None:
        self.latest[topic] = message

    def of(self, kind: topics.Kind, stream: topics.Stream) -> list[tuple[topics.TopicParts, m.Message]]:
        rows = []
        for topic, message in sorted(self.latest.items()):
            parts = topics.parse(topic)
            if parts.kind is kind and parts.stream is stream:
                rows.append((parts, message))
        return rows

    def availability(self, kind: topics.Kind, device: str) -> str:
        message = self.latest.get(topics.availability(self.site, kind, device))
        return message.state.value if isinstance(message, m.Availability) else "?"


# A simulator whose clock has not been heard for this long (wall seconds) has stopped: its clock
# stands at the last time it published, rather than running on at its speed.
SIM_SILENT_S = 30.0


def fleet_clock(view: FleetView, clock: str, wall: datetime) -> tuple[datetime, str]:
    """Now, in the clock the fleet stamps its readings with, and that clock's name.

    With ``clock: simulator`` (demos, accelerated tests) the readings carry simulated time: now is
    the simulator's last published time, run forward at its speed since it was sent.
    """
    truth = view.latest.get(topics.simulator_truth(view.site))
    if clock != "simulator" or not isinstance(truth, m.SimTruth):
        return wall, "wall clock"
    elapsed = max(0.0, (wall - (truth.wall_time or truth.ts)).total_seconds())
    if elapsed > SIM_SILENT_S:
        return truth.sim_time, "simulated clock, stopped"
    return truth.sim_time + timedelta(seconds=elapsed * truth.speed), "simulated clock"


def _age(ts: datetime, now: datetime, wall: datetime | None = None) -> str:
    """How old a stamp is by ``now``. A stamp far ahead of a simulated ``now`` was made by the wall
    clock (a service announces itself before it hears the simulator): that one is aged by ``wall``."""
    suffix = ""
    if wall is not None and (ts - now).total_seconds() > SIM_SILENT_S:
        now, suffix = wall, " (wall clock)"
    seconds = max(0.0, (now - ts).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s{suffix}"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min{suffix}"
    return f"{seconds / 3600:.1f} h{suffix}"


def _w(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _setpoint(decision: m.DispatcherDecision) -> str:
    """The battery setpoint; while the inverter runs its own self-use nothing was sent, and the
    number is what it is expected to do from its last reading (minutes old against an accelerated
    demo), so it says so rather than look like a command the battery is disobeying."""
    shown = _w(decision.setpoints.battery_power_w)
    return shown if decision.commanding else f"{shown} expected"


def render(
    view: FleetView, now: datetime | None = None, clock_name: str = "wall clock", wall: datetime | None = None
) -> Group:
    """The fleet as tables; ages are ``now`` minus each reading's stamp, in ``clock_name`` (``wall``:
    the wall clock, for stamps made before the fleet followed a simulator)."""
    now = now or m.utc_now()

    def _since(ts: datetime) -> str:
        return _age(ts, now, wall)

    services = Table(
        title=f"ongrid site '{view.site}': services (ages by the {clock_name}, now {now:%Y-%m-%d %H:%M:%S} UTC)",
        title_justify="left",
    )
    for column in ("service", "state", "since"):
        services.add_column(column)
    for parts, message in view.of(topics.Kind.SERVICE, topics.Stream.AVAILABILITY):
        assert isinstance(message, m.Availability)
        style = "green" if message.state is m.AvailabilityState.ONLINE else "red"
        services.add_row(parts.device, f"[{style}]{message.state.value}[/]", _since(message.ts))

    devices = Table(title="devices (W: into the house is +)", title_justify="left")
    for column in ("device", "kind", "avail", "SoC %", "battery W", "grid W", "PV W", "load W", "detail", "age"):
        devices.add_column(column, justify="right" if column.endswith(("W", "%")) else "left")
    for parts, message in view.of(topics.Kind.INVERTER, topics.Stream.STATE):
        assert isinstance(message, m.InverterState)
        devices.add_row(
            parts.device, "inverter", view.availability(parts.kind, parts.device), f"{message.battery_soc_pct:.0f}",
            _w(message.battery_power_w), _w(message.grid_power_w), _w(message.pv_power_w),
            _w(message.load_power_w), message.running_state.value, _since(message.ts),
        )
    for parts, message in view.of(topics.Kind.BMS, topics.Stream.STATE):
        assert isinstance(message, m.BatteryState)
        spread = "" if message.cell_spread_mv is None else f", spread {message.cell_spread_mv:.0f} mV"
        devices.add_row(
            parts.device, "bms", view.availability(parts.kind, parts.device), f"{message.soc_pct:.0f}",
            _w(message.power_w), "", "", "", f"{message.voltage_v:.1f} V{spread}", _since(message.ts),
        )
    for parts, message in view.of(topics.Kind.METER, topics.Stream.STATE):
        assert isinstance(message, m.MeterState)
        slot = {"grid": 0, "pv": 1}.get(message.role.value, 2)
        cells = ["", "", ""]
        cells[slot] = _w(message.power_w) + ("~" if message.below_accurate_range else "")
        devices.add_row(
            parts.device, f"meter/{message.role.value}", view.availability(parts.kind, parts.device), "", "",
            *cells, f"{message.voltage_v:.0f} V", _since(message.ts),
        )

    parts_out: list[Any] = [services, devices]
    decisions = view.of(topics.Kind.DISPATCHER, topics.Stream.DECISION)
    if decisions:
        table = Table(title="dispatcher", title_justify="left")
        for column in ("mode", "reason", "setpoint W", "detail", "age"):
            table.add_column(column)
        for _, message in decisions:
            assert isinstance(message, m.DispatcherDecision)
            table.add_row(
                message.mode, message.reason, _setpoint(message), message.detail or "", _since(message.ts),
            )
        parts_out.append(table)
    return Group(*parts_out)


def as_json(view: FleetView) -> str:
    return json.dumps({t: json.loads(msg.to_json()) for t, msg in sorted(view.latest.items())}, indent=2)


async def collect(cfg: OngridConfig, seconds: float, watch: bool, console: Console, clock: str = "wall") -> FleetView:
    view = FleetView(cfg.site)
    async with Bus(cfg.mqtt, site=cfg.site, service="status", announce=False) as bus:
        bus.subscribe(topics.everything(cfg.site), model_for_topic, view.take)
        try:
            await bus.subscribed(timeout=seconds + 5)
        except TimeoutError:
            raise ConnectionError(f"no answer from the broker at {cfg.mqtt.host}:{cfg.mqtt.port}") from None
        if not watch:
            await asyncio.sleep(seconds)
            return view
        def show() -> Group:
            wall = datetime.now(UTC)
            return render(view, *fleet_clock(view, clock, wall), wall)

        with Live(show(), console=console, refresh_per_second=2) as live:
            while True:
                await asyncio.sleep(0.5)
                live.update(show())


app = typer_app("Show the fleet's availability and latest readings.")


@app.command()
def status(
    config: ConfigOption = None,
    wait: Annotated[float, typer.Option(help="Seconds to listen for retained state.")] = 1.5,
    watch: Annotated[bool, typer.Option("--watch", help="Keep updating until Ctrl-C.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the raw latest payloads as JSON.")] = False,
) -> None:
    cfg = load_or_exit(config)
    # Piped output (scripts, tests) gets full-width rows instead of an 80-column squeeze.
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        view = asyncio.run(collect(cfg, wait, watch, console, cfg.clock))
    except KeyboardInterrupt:
        return
    except ConnectionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if json_out:
        typer.echo(as_json(view))
    elif not view.latest:
        typer.echo(f"nothing retained for site '{cfg.site}' on {cfg.mqtt.host}:{cfg.mqtt.port}: is the fleet running?")
        raise typer.Exit(1)
    else:
        wall = datetime.now(UTC)
        console.print(render(view, *fleet_clock(view, cfg.clock, wall), wall))


def main(argv: list[str] | None = None) -> None:
    app(args=sys.argv[1:] if argv is None else argv, prog_name="ongrid status")

