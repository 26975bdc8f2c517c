"""``ongrid report --config FILE --from DATE --to DATE [--out DIR] [--site SITE]``."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from shared.cli import typer_app
from shared.service import ConfigOption, load_or_exit

from ..backends import BackendError, open_reader
from ..control_figures import figures_html
from ..stats_job import stored_days
from .render import collect, nights_table, render


def _moment(value: str, what: str, zone: ZoneInfo, *, end: bool) -> datetime:
    """A day (local midnight; the day after for ``--to``) or an ISO time (with an offset, or local)."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        if end:
            day = date.fromordinal(day.toordinal() + 1)
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{what} {value!r} is not a date YYYY-MM-DD or a time YYYY-MM-DDTHH:MM[+HH:MM]"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=zone)).astimezone(UTC)


def main(argv: list[str] | None = None) -> None:
    app = typer_app("Render the dashboards' views to PNG files and one HTML page.")

    @app.command()
    def report(
        from_: Annotated[
            str, typer.Option("--from", help="First day YYYY-MM-DD (site's local time), or a time with offset.")
        ],
        to: Annotated[str, typer.Option("--to", help="Last day, inclusive, YYYY-MM-DD; or a time (exclusive).")],
        config: ConfigOption = None,
        out: Annotated[Path, typer.Option("--out", help="Directory for the PNGs and index.html.")] = Path("report"),
        site: Annotated[str | None, typer.Option("--site", help="Site (default: the config's).")] = None,
    ) -> None:
        cfg = load_or_exit(config)
        zone = ZoneInfo(cfg.tariff.timezone)
        start = _moment(from_, "--from", zone, end=False)
        end = _moment(to, "--to", zone, end=True)
        if end <= start:
            raise typer.BadParameter(f"--to {to} is not after --from {from_}")
        reader = open_reader(cfg)
        try:
            results = collect(reader, site or cfg.site, start, end)
            days = stored_days(reader, site or cfg.site, start, end)
            careful = figures_html(cfg, reader, start, end)
        except BackendError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        finally:
            reader.close()
        index = render(
            results,
            out,
            site or cfg.site,
            start,
            end,
            cfg.tariff.timezone,
            cfg.tariff.currency,
            nights_table(days) + careful,
        )
        empty = [p.panel.title for r in results for p in r.panels if p.points == 0]
        named = f": {', '.join(empty)}" if empty else ""
        typer.echo(f"wrote {index} ({sum(len(r.panels) for r in results)} panels, {len(empty)} without data{named})")

    app(args=sys.argv[1:] if argv is None else argv, prog_name="ongrid report", standalone_mode=True)


if __name__ == "__main__":
    main()
