"""Render dashboards to PNG and HTML. The data comes from a ``Reader`` (InfluxDB or the embedded
store) running the same ``views`` queries the Grafana panels run."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.figure
import matplotlib.pyplot as plt
import pandas as pd

from shared.messages import DailyStats

from ..backends import Reader
from ..backends.base import Series
from ..rows import ns
from ..stats import monthly
from ..views import DASHBOARDS, Dashboard, Panel, display, every_seconds


@dataclass
class PanelResult:
    panel: Panel
    series: Series
    png: str | None = None

    @property
    def points(self) -> int:
        return sum(len(v) for v in self.series.values())


@dataclass
class DashboardResult:
    dashboard: Dashboard
    panels: list[PanelResult] = field(default_factory=list)


def choose_interval(start: datetime, end: datetime, buckets: int = 300) -> int:
    """A bucket size giving about ``buckets`` points across the range (Grafana's $__interval idea)."""
    seconds = max(1.0, (end - start).total_seconds() / buckets)
    for nice in (10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400):
        if seconds <= nice:
            return nice
    return 86400


def collect(reader: Reader, site: str, start: datetime, end: datetime) -> list[DashboardResult]:
    every = choose_interval(start, end)
    results = []
    for dashboard in DASHBOARDS:
        result = DashboardResult(dashboard)
        for panel in dashboard.panels:
            series: Series = {}
            for query in panel.queries:
                for label, points in reader.aggregate(query, site, ns(start), ns(end), every).items():
                    # A grouped series comes back as "tag=value"; the legend is Grafana's.
                    tag = label.partition("=")[2] if query.group_by else None
                    series[query.legend(tag)] = points
            result.panels.append(PanelResult(panel, series))
        results.append(result)
    return results


def _local_days(times: pd.DatetimeIndex, timezone: str) -> pd.DatetimeIndex:
    """Daily buckets at the site's midnight: a day's row is keyed at UTC midnight of its date
    (``points._daily``), which is 01:00 in a British summer and the evening before west of UTC."""
    return pd.DatetimeIndex(times.tz_convert("UTC").tz_localize(None).normalize()).tz_localize(timezone)


def day_span(start: datetime, end: datetime, timezone: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The site's midnights around the days whose rows fall in ``[start, end)`` (keyed at UTC
    midnight of their date); the day ``start`` falls in when no such key does."""
    first = pd.Timestamp(start).tz_convert("UTC").ceil("D")
    last = pd.Timestamp(end).tz_convert("UTC").ceil("D")
    if first >= last:
        first, last = pd.Timestamp(start).tz_convert("UTC").floor("D"), first
    days = pd.DatetimeIndex([first, last]).tz_localize(None).normalize()
    local = days.tz_localize(timezone)
    return local[0], local[1]


def figure(
    result: PanelResult, start: datetime, end: datetime, timezone: str, currency: str = "GBP"
) -> matplotlib.figure.Figure:
    """One panel as a figure: values in the unit people read (Wh as kWh), axes named with it."""
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=100)
    panel = result.panel
    shown = display(panel.unit, currency)
    if panel.kind == "stat":
        lines = [
            f"{label}: {points[-1][1] * shown.factor:.2f} {shown.label}"
            for label, points in result.series.items()
            if points
        ]
        ax.axis("off")
        ax.text(0.02, 0.5, "\n".join(lines) or "no data", fontsize=16, va="center")
    else:
        labels = list(result.series)
        # A bar spans its bucket (a day, or the panel's interval), the series side by side in it.
        fixed = {q.every for q in panel.queries}
        every = fixed.pop() if len(fixed) == 1 else None
        bucket_days = every_seconds(every) / 86400.0 if every else None
        if bucket_days is None:
            starts = sorted({t for points in result.series.values() for t, _ in points})
            gaps = [b - a for a, b in pairwise(starts) if b > a]
            bucket_days = (min(gaps) if gaps else 86400e9) / 86400e9
        width_days = 0.8 * bucket_days / max(1, len(labels))
        daily = panel.kind == "bars" and bucket_days >= 1
        for n, label in enumerate(labels):
            points = result.series[label]
            if not points:
                continue
            times = pd.to_datetime([t for t, _ in points], unit="ns", utc=True)
            times = _local_days(times, timezone) if daily else times.tz_convert(timezone)
            values = [v * shown.factor for _, v in points]
            if panel.kind == "bars":
                offset = pd.Timedelta(days=bucket_days / 2 + (n - (len(labels) - 1) / 2) * width_days)
                ax.bar(times + offset, values, width=width_days, label=label)
            else:
                ax.plot(times, values, label=label, linewidth=1.2)
        if daily:
            # Whole days: a day's bars across its day, not across the hours of a run's range.
            first, last = day_span(start, end, timezone)
            ax.set_xlim(first, last)
            # At most about ten day labels, however long the range.
            every_days = max(1, math.ceil((last - first).days / 10))
            ax.xaxis.set_major_locator(mdates.DayLocator(interval=every_days, tz=timezone))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b", tz=timezone))
            ax.set_xlabel(f"day ({timezone})")
        else:
            ax.set_xlim(pd.Timestamp(start).tz_convert(timezone), pd.Timestamp(end).tz_convert(timezone))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b %H:%M", tz=timezone))
            ax.set_xlabel(f"time ({timezone})")
        ax.set_ylabel(shown.label)
        ax.grid(alpha=0.3)
        if result.series:
            ax.legend(loc="upper left", fontsize=8, ncol=min(4, len(labels)))
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
    ax.set_title(panel.title, fontsize=11)
    fig.tight_layout()
    return fig


def _plot(
    result: PanelResult, path: Path, start: datetime, end: datetime, timezone: str, currency: str = "GBP"
) -> None:
    fig = figure(result, start, end, timezone, currency)
    fig.savefig(path)
    plt.close(fig)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


def time_range(start: datetime, end: datetime, timezone: str) -> str:
    """The report's range in the site's time zone, named (``2026-06-21 01:00 to 2026-06-22 01:00 Europe/London``)."""
    zone = ZoneInfo(timezone)
    return f"{start.astimezone(zone):%Y-%m-%d %H:%M} to {end.astimezone(zone):%Y-%m-%d %H:%M} {timezone}"


def nights_table(days: list[DailyStats]) -> str:
    """Nights to sunrise per month, and the SoC at first light of each night against where the
    battery stops discharging (the daily statistics' figures)."""
    months = monthly(days)
    if not any(month.get("nights") for month in months.values()):
        return "<h2>Nights to sunrise</h2><p>No night with a SoC reading at first light in this range.</p>"
    rows = []
    for key in sorted(months):
        month = months[key]
        if not month.get("nights"):
            continue
        nights = []
        for day in sorted((d for d in days if d.day.strftime("%Y-%m") == key), key=lambda d: d.day):
            if day.reached_sunrise is None or day.soc_at_sunrise_pct is None:
                continue
            mark = "made" if day.reached_sunrise else "missed"
            nights.append(
                f"{day.day:%d}: {day.soc_at_sunrise_pct:.1f} % (stops at {day.discharge_stop_pct or 0:.0f} %, {mark})"
            )
        rows.append(
            f"<tr><td>{key}</td><td>{month.get('nights_to_sunrise', 0)} of {month['nights']}</td>"
            f"<td>{html.escape('; '.join(nights))}</td></tr>"
        )
    return (
        "<h2>Nights to sunrise</h2><p>A night is made when the SoC at first light is above where the battery "
        "stops discharging (the reserve; the floor in mode off) by more than 1 point.</p>"
        "<table><tr><th>month</th><th>nights made</th><th>SoC at first light, per night</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def render(
    results: list[DashboardResult],
    out: Path,
    site: str,
    start: datetime,
    end: datetime,
    timezone: str,
    currency: str = "GBP",
    extra_html: str = "",
) -> Path:
    """Write one PNG per panel and ``index.html``; returns the HTML path."""
    out.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>ongrid report {html.escape(site)}</title>",
        "<style>body{font-family:sans-serif;max-width:1040px;margin:auto}img{width:100%}</style></head><body>",
        f"<h1>ongrid report: {html.escape(site)}</h1>",
        f"<p>{html.escape(time_range(start, end, timezone))}</p>",
        extra_html,
    ]
    for result in results:
        parts.append(f"<h2>{html.escape(result.dashboard.title)}</h2>")
        for number, panel_result in enumerate(result.panels):
            name = f"{result.dashboard.uid}-{number:02d}-{_slug(panel_result.panel.title)}.png"
            _plot(panel_result, out / name, start, end, timezone, currency)
            panel_result.png = name
            parts.append(f"<h3>{html.escape(panel_result.panel.title)}</h3>")
            if panel_result.panel.description:
                parts.append(f"<p>{html.escape(panel_result.panel.description)}</p>")
            parts.append(f"<img src='{name}' alt='{html.escape(panel_result.panel.title)}'>")
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts))
    return index
