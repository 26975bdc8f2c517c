"""``ongrid backtest``: what would this battery and this policy have saved me?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from services.dispatcher.core.forecast import PvArray
from services.dispatcher.highs import silence_highs_banner
from shared.cli import typer_app
from shared.config import BatteryConfig, ConfigError, load_config
from shared.config.transports import ModbusTcp
from shared.energy.battery import BatteryModel
from shared.energy.tariff import TariffError, tariff_from_config

from .data import DataError, read_series
from .engine import POLICIES, Setup
from .parallel import run_policies
from .report import summarise

app = typer_app(__doc__ or "")


def _battery(config_path: Path, battery_kwh: float | None, power_kw: float | None) -> tuple[Setup, str]:
    cfg = load_config(config_path)
    d = cfg.dispatcher
    battery_cfg = cfg.battery(d.battery)
    if battery_cfg is None:
        if battery_kwh is None:
            raise ConfigError(f"{config_path}: no batteries[] configured; give --battery-kwh")
        # The battery's other figures take their documented defaults.
        battery_cfg = BatteryConfig(
            id="backtest", transport=ModbusTcp(kind="modbus_tcp", host="localhost"), usable_kwh=battery_kwh
        )
    model = BatteryModel.from_config(
        battery_cfg, cfg.inverter(d.inverter), capacity_kwh=battery_kwh, power_kw=power_kw
    )
    tariff = tariff_from_config(cfg.tariff, read_text=lambda p: (config_path.parent / p).read_text())
    array = PvArray(d.pv_kwp, d.pv_tilt_deg, d.pv_azimuth_deg, d.latitude, d.longitude)
    return Setup(model, d, tariff, cfg.tariff.timezone, array, loads=tuple(cfg.loads)), cfg.tariff.currency


@app.command()
def backtest(
    config: Annotated[Path, typer.Option(help="ongrid YAML: tariff, batteries[], dispatcher.")],
    data: Annotated[
        Path | None, typer.Option(help="CSV of timestamp,load_w,pv_w (ISO times with offset).")
    ] = None,
    from_store: Annotated[
        bool, typer.Option("--from-store", help="Replay the site's recorded load and PV instead of a CSV.")
    ] = False,
    start: Annotated[str | None, typer.Option(help="With --from-store: first day, YYYY-MM-DD (site's time).")] = None,
    end: Annotated[str | None, typer.Option(help="With --from-store: last day, inclusive, YYYY-MM-DD.")] = None,
    policy: Annotated[
        list[str] | None, typer.Option(help=f"Repeatable: {', '.join(POLICIES)} (default all).")
    ] = None,
    battery_kwh: Annotated[float | None, typer.Option(help="Usable kWh, overrides the config.")] = None,
    power_kw: Annotated[
        float | None, typer.Option(help="Charge and discharge kW, overrides the config.")
    ] = None,
    battery_cost: Annotated[float | None, typer.Option(help="Installed cost, for payback years.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (on stderr).")] = True,
) -> None:
    err = Console(stderr=True)
    policies = list(dict.fromkeys(policy or POLICIES))
    for name in policies:
        if name not in POLICIES:
            err.print(f"error: unknown policy {name!r}; choose from {', '.join(POLICIES)}", soft_wrap=True)
            raise typer.Exit(2)
    if "none" not in policies:
        policies.insert(0, "none")  # savings are measured against it
    try:
        setup, currency = _battery(config, battery_kwh, power_kw)
        if from_store:
            from .store import from_cli  # the recorder's store: loaded only when asked for

            series = from_cli(config, start, end)
            data = Path(f"store:{start}..{end}")
        elif data is None:
            raise DataError("give --data FILE.csv, or --from-store --start DATE --end DATE")
        else:
            series = read_series(data)
    except (ConfigError, DataError, TariffError, OSError, ValueError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    silence_highs_banner()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not progress,
    ) as bar:
        tasks: dict[str, TaskID] = {name: bar.add_task(f"{name:>9}", total=len(series.times)) for name in policies}
        try:
            results = run_policies(
                series, policies, setup, progress=lambda name, steps: bar.advance(tasks[name], steps)
            )
        except (TariffError, ValueError) as exc:
            err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    summary = summarise(results, battery_cost)
    summary_meta = {
        "data": str(data),
        "step_s": series.step_s,
        "rows": len(series.times),
        "start": series.times[0].isoformat(),
        "end": series.times[-1].isoformat(),
        "battery_kwh": setup.battery.capacity_wh / 1000.0,
        "power_kw": setup.battery.max_discharge_w / 1000.0,
        "currency": currency,
    }
    if as_json:
        typer.echo(json.dumps({"meta": summary_meta, "policies": summary}, indent=2))
        return
    table = Table(title=f"backtest {data} ({summary_meta['start'][:10]} to {summary_meta['end'][:10]})")
    for column in (
        "policy",
        f"cost {currency}",
        "savings",
        "import kWh",
        "export kWh",
        "self-suff %",
        "cycles",
        "payback y",
    ):
        table.add_column(column, justify="right")
    for name, item in summary.items():
        pay = item.get("payback", {})
        band = pay.get("payback_band_years")
        pay_text = "-" if not pay or pay.get("payback_years") is None else f"{pay['payback_years']}"
        if band:
            pay_text += f" ({band[0]}-{band[1] if band[1] is not None else 'never'})"
        table.add_row(
            name,
            f"{item['cost']:.2f}",
            f"{item.get('savings_vs_none', 0):.2f}",
            f"{item['import_kwh']:.0f}",
            f"{item['export_kwh']:.0f}",
            f"{item['self_sufficiency_pct']:.1f}",
            f"{item['battery_cycles']:.0f}",
            pay_text,
        )
    console = Console()
    console.print(table)
    if "spans" in summary.get("planner", {}):
        spans = summary["planner"]
        # The planner's data ran in spans side by side (backtest/parallel.py): how many were
        # replayed again because the warm-up had not reached the state the span before left.
        console.print(
            f"planner: {spans['spans']} spans side by side, {spans['spans_rerun']} replayed again from the true state",
            markup=False,
            highlight=False,
        )
    for name, item in summary.items():
        for load, flex in item.get("flexible", {}).items():
            # A flexible load's energy is in the policy's bill: say how much and from where.
            console.print(
                f"{name}: {load} drew {flex['kwh']:.1f} kWh, {flex['from_battery_kwh']:.1f} kWh of it "
                f"from the battery (none and perfect replay the data's load without it)",
                markup=False,
                highlight=False,
            )


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``python -m services.backtest`` and ``ongrid backtest``."""
    app(args=argv, prog_name="ongrid backtest", standalone_mode=True)
