"""``ongrid demo``: the seed house, simulated at 60x, run by the real fleet.

It starts a private Mosquitto, the simulator and every service (each its own process, exactly as
in production), shows a live status table with the simulated day's progress, then stops the fleet
and renders the day with ``ongrid report``. Nothing here is demo-only logic: the services are the
ones a user deploys, configured by a copy of ``deploy/scenarios/seed-house.yaml`` whose ports and
paths are moved somewhere free.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from services.status import FleetView, render
from shared import topics
from shared.bus import Bus
from shared.cli import typer_app
from shared.config import ConfigError, MqttConfig, load_config
from shared.contract import model_for_topic
from shared.messages import Message, SimTruth
from shared.ports import free_port

from .endpoints import endpoint_map, read_endpoints
from .fleet_start import NotOnline, service_name, start_when_online
from .localbroker import Broker
from .processes import ROOT, Child, stop_all

SCENARIO = ROOT / "deploy" / "scenarios" / "seed-house.yaml"
SERVICES = ("inverter_bridge", "bms_bridge", "meter_bridge", "dispatcher", "recorder")


# Durations the services count in simulated seconds while their polls and ticks stay in wall
# seconds. At 60x a 120 s lease is 2 wall seconds, shorter than a poll: each gets at least this
# many *wall* seconds, scaled by the speed. (section, key) -> wall seconds.
_WALL_FLOORS: dict[tuple[str, str], float] = {
    ("dispatcher", "lease_s"): 30.0,
    ("dispatcher", "stale_after_s"): 30.0,
    ("inverters", "verify_s"): 15.0,
    ("simulator.inverter", "passive_timeout_s"): 60.0,
}


def _scale_durations(data: dict[str, Any], speed: float) -> None:
    for (section, key), wall_s in _WALL_FLOORS.items():
        node: Any = data
        for part in section.split("."):
            node = node.setdefault(part, {}) if isinstance(node, dict) else {}
        for target in node if isinstance(node, list) else [node]:
            if isinstance(target, dict):
                target[key] = max(float(target.get(key, 0.0)), wall_s * speed)


def relocate_scenario(
    data: dict[str, Any], workdir: Path, port: Callable[[], int], broker_port: int, speed: float = 1.0
) -> dict[str, Any]:
    """A copy of a scenario whose TCP ports are free ones and whose ptys and state live under
    ``workdir``, with durations made long enough in wall time for the given simulator speed.

    Ports are remapped consistently: the simulator's ``listen`` port and every fleet transport
    that pointed at it get the same new port, so the copy is still a matching pair.
    """
    old_run_dir = str(data.get("simulator", {}).get("run_dir", "var/run")).rstrip("/")
    new_run_dir = str(workdir / "run")
    remap: dict[int, int] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {key: walk(value) for key, value in node.items()}
            if isinstance(out.get("port"), int) and "host" in out:
                out["port"] = remap.setdefault(out["port"], port())
            return out
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, str) and (node == old_run_dir or node.startswith(old_run_dir + "/")):
            return new_run_dir + node[len(old_run_dir) :]
        return node

    relocated = walk({key: value for key, value in data.items() if key != "mqtt"})
    relocated["mqtt"] = {**data.get("mqtt", {}), "host": "127.0.0.1", "port": broker_port}
    relocated.setdefault("simulator", {})["run_dir"] = new_run_dir
    relocated["recorder"] = {
        **relocated.get("recorder", {}),
        "sqlite_path": str(workdir / "ongrid.sqlite"),
        "spool_dir": str(workdir / "spool"),
    }
    state_dir = str(workdir / "state")
    for inverter in relocated.get("inverters", []):
        inverter["state_dir"] = state_dir
    relocated.setdefault("dispatcher", {})["state_dir"] = state_dir
    relocated["clock"] = "simulator"
    if speed > 1:
        _scale_durations(relocated, speed)
    return relocated


@dataclass
class Fleet:
    """The processes of one demo run, their logs, and how they ended."""

    workdir: Path
    config: Path
    children: dict[str, Child] = field(default_factory=dict)

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        return {name: child.process for name, child in self.children.items() if child.process is not None}

    def start(self, name: str, module: str, *args: str) -> subprocess.Popen[bytes]:
        child = Child(
            module, "--config", str(self.config), *args, log=self.log_path(name), pipe_stdout=name == "simulator"
        )
        self.children[name] = child
        return child.start()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to one process and wait for it to end; its exit status."""
        return self.children[name].kill(sig, timeout=15)

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        """Start a process again with the command it was started with, its log continued."""
        child = self.children[name]
        if child.running():
            child.kill(signal.SIGTERM, timeout=15)
        return child.start(append=True)

    def dead(self) -> dict[str, int]:
        return {name: code for name, child in self.children.items() if (code := child.returncode()) is not None}

    def stop(self) -> None:
        stop_all(self.processes.values(), grace_s=10)


class Watcher:
    """Everything the fleet publishes, for the live table and the progress bar."""

    def __init__(self, site: str) -> None:
        self.view = FleetView(site)
        self.sim_time: datetime | None = None

    async def take(self, topic: str, message: Message) -> None:
        await self.view.take(topic, message)
        if isinstance(message, SimTruth):
            self.sim_time = message.sim_time


async def _watch(
    mqtt: MqttConfig, site: str, start: datetime, end: datetime, fleet: Fleet, console: Console, live_ui: bool
) -> Watcher:
    watcher = Watcher(site)
    progress = Progress(
        TextColumn("[bold]simulated day"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task("starting", total=(end - start).total_seconds())
    async with Bus(mqtt, site=site, service="demo", announce=False) as bus:
        bus.subscribe(topics.everything(site), model_for_topic, watcher.take)
        await bus.subscribed(timeout=10)
        last_print = 0.0
        live = Live(console=console, refresh_per_second=2) if live_ui else contextlib.nullcontext()
        with live as display:
            while watcher.sim_time is None or watcher.sim_time < end:
                if fleet.dead():
                    break
                if watcher.sim_time is not None:
                    done = (watcher.sim_time - start).total_seconds()
                    progress.update(task, completed=done, description=watcher.sim_time.strftime("%a %d %b %H:%M"))
                if display is not None:
                    table = render(watcher.view, watcher.sim_time, "simulated clock", datetime.now(UTC))
                    display.update(Group(table, progress))
                elif time.monotonic() - last_print > 10 and watcher.sim_time is not None:
                    last_print = time.monotonic()
                    console.print(f"simulated time {watcher.sim_time:%Y-%m-%d %H:%M} UTC")
                await asyncio.sleep(0.5)
        if not live_ui:
            console.print(render(watcher.view, watcher.sim_time, "simulated clock", datetime.now(UTC)))
    return watcher


def _wall(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


@contextlib.contextmanager
def private_broker(workdir: Path) -> Iterator[Broker]:
    """A fresh Mosquitto of the run's own under ``workdir/mqtt``, stopped on exit."""
    mqtt_dir = workdir / "mqtt"
    shutil.rmtree(mqtt_dir, ignore_errors=True)
    mqtt_dir.mkdir(parents=True)
    broker = Broker("127.0.0.1", free_port(), mqtt_dir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def run_demo(
    *, scenario: Path, workdir: Path, start_day: date, hours: float, speed: float, console: Console, live_ui: bool
) -> int:
    shutil.rmtree(workdir / "run", ignore_errors=True)
    for stale in ("ongrid.sqlite", "spool", "report", "logs", "state"):
        target = workdir / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    workdir.mkdir(parents=True, exist_ok=True)
    with private_broker(workdir) as broker:
        data = yaml.safe_load(scenario.read_text())
        config_path = workdir / "ongrid.yaml"
        relocated = relocate_scenario(data, workdir, free_port, broker.port, speed)
        config_path.write_text(yaml.safe_dump(relocated, sort_keys=False))
        try:
            cfg = load_config(config_path)
        except ConfigError as exc:
            console.print(f"[red]the scenario is not a valid config:[/] {exc}", soft_wrap=True)
            return 2
        fleet = Fleet(workdir, config_path)
        start = datetime.combine(start_day, datetime.min.time(), UTC)
        end = start + timedelta(hours=hours)
        console.print(
            f"[bold]ongrid demo[/]: {scenario.name}, {start_day} for {hours:g} h at {speed:g}x "
            f"(about {_wall(hours * 3600 / speed)} once the services are online); broker on port "
            f"{broker.port}; logs in "
            f"{workdir / 'logs'}"
        )
        failed = False
        try:
            # Held at the start until every service is online: at this speed a service still
            # importing its libraries would miss hours of the day (see fleet_start).
            simulator = fleet.start(
                "simulator", "services.simulator", "--speed", str(speed), "--start", start.isoformat(), "--mqtt",
                "--hold",
            )
            endpoints = read_endpoints(simulator, timeout=60, log=fleet.log_path("simulator"))
            for endpoint in endpoints:
                console.print(f"  simulated {endpoint['model']:<16} {endpoint['protocol']:<12} {endpoint['endpoint']}")
            for service in SERVICES:
                fleet.start(service, f"services.{service}")
            console.print("simulated clock held at the start until every service is online")
            start_when_online(
                cfg.mqtt,
                cfg.site,
                [service_name(service) for service in SERVICES],
                endpoint_map(endpoints)["control"],
                dead=fleet.dead,
                report=lambda name, after_s: console.print(f"  {name} online after {after_s:.1f} s"),
            )
            console.print("simulated day started")
            asyncio.run(_watch(cfg.mqtt, cfg.site, start, end, fleet, console, live_ui))
        except KeyboardInterrupt:
            console.print("interrupted")
        except NotOnline as exc:
            failed = True
            console.print(f"[red]{exc}[/]; see {fleet.log_path(exc.missing[0].replace('-', '_'))}", soft_wrap=True)
        except RuntimeError as exc:
            failed = True
            console.print(f"[red]{exc}[/]; see {fleet.log_path('simulator')}", soft_wrap=True)
        finally:
            dead = fleet.dead()
            fleet.stop()
        for name, code in dead.items():
            console.print(f"[red]{name} exited early with status {code}[/]: see {fleet.log_path(name)}", soft_wrap=True)
        report_dir = workdir / "report"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.recorder.report",
                "--config",
                str(config_path),
                # The run's own range (UTC), not whole days in the site's time zone.
                "--from",
                start.isoformat(),
                "--to",
                end.isoformat(),
                "--out",
                str(report_dir),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            console.print(f"[red]ongrid report failed[/]:\n{result.stderr.strip()}", soft_wrap=True)
            return 1
        console.print(result.stdout.strip())
        console.print(f"[bold green]done[/]: report in {report_dir} (open {report_dir / 'index.html'})")
        return 1 if dead or failed else 0


app = typer_app("Run the seed house with every service and show it live.")


@app.command()
def demo(
    scenario: Annotated[Path, typer.Option(help="Scenario file (a fleet config with a simulator section).")] = SCENARIO,
    day: Annotated[str, typer.Option(help="Simulated day to start (YYYY-MM-DD).")] = "2026-06-21",
    hours: Annotated[float, typer.Option(min=0.1, max=168, help="Simulated hours to run.")] = 24.0,
    speed: Annotated[float, typer.Option(min=1, max=3600, help="Simulated seconds per real second.")] = 60.0,
    workdir: Annotated[Path, typer.Option(help="Where the run's config, logs, data and report go.")] = Path("var/demo"),
    plain: Annotated[bool, typer.Option(help="Print progress lines instead of a live table.")] = False,
) -> None:
    try:
        start_day = date.fromisoformat(day)
    except ValueError:
        typer.echo(f"error: --day {day!r} is not a date YYYY-MM-DD", err=True)
        raise typer.Exit(2) from None
    console = Console(width=None if sys.stdout.isatty() else 160)
    code = run_demo(
        scenario=scenario,
        workdir=workdir.resolve(),
        start_day=start_day,
        hours=hours,
        speed=speed,
        console=console,
        live_ui=console.is_terminal and not plain,
    )
    raise typer.Exit(code)


def main(argv: list[str] | None = None) -> None:
    app(args=sys.argv[1:] if argv is None else argv, prog_name="ongrid demo")
