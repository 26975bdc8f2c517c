"""``ongrid report --config FILE --from DATE --to DATE [--out DIR] [--site SITE]``."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from shared.service import ConfigOption, load_or_exit

from ..backends import BackendError, open_reader
from .render import collect, render


def _day(value: str, what: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{what} {value!r} is not a date YYYY-MM-DD") from None


def main(argv: list[str] | None = None) -> None:
    app = typer.Typer(add_completion=False, help="Render the dashboards' views to PNG files and one HTML page.")

    @app.command()
    def report(
        from_: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD (site's local time).")],
        to: Annotated[str, typer.Option("--to", help="Last day, inclusive, YYYY-MM-DD.")],
        config: ConfigOption = None,
        out: Annotated[Path, typer.Option("--out", help="Directory for the PNGs and index.html.")] = Path("report"),
        site: Annotated[str | None, typer.Option("--site", help="Site (default: the config's).")] = None,
    ) -> None:
        cfg = load_or_exit(config)
        first, last = _day(from_, "--from"), _day(to, "--to")
        if last < first:
            raise typer.BadParameter(f"--to {to} is before --from {from_}")
        zone = ZoneInfo(cfg.tariff.timezone)
        start = datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)
        end = datetime.combine(date.fromordinal(last.toordinal() + 1), time(0), tzinfo=zone).astimezone(UTC)
        reader = open_reader(cfg)
        try:
            results = collect(reader, site or cfg.site, start, end)
        except BackendError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        finally:
            reader.close()
        index = render(results, out, site or cfg.site, start, end, cfg.tariff.timezone)
        empty = [p.panel.title for r in results for p in r.panels if p.points == 0]
        typer.echo(f"wrote {index} ({sum(len(r.panels) for r in results)} panels, {len(empty)} without data)")

    app(args=sys.argv[1:] if argv is None else argv, prog_name="ongrid report", standalone_mode=True)


if __name__ == "__main__":
    main()
