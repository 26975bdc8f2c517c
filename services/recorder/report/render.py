"""Render dashboards to PNG and HTML. The data comes from a ``Reader`` (InfluxDB or the embedded
store) running the same ``views`` queries the Grafana panels run."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pandas as pd

from ..backends import Reader
from ..backends.base import Series
from ..rows import ns
from ..views import DASHBOARDS, Dashboard, Panel


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
                    series[label if len(panel.queries) == 1 or not query.group_by else f"{query.field} {label}"] = (
                        points
                    )
            result.panels.append(PanelResult(panel, series))
        results.append(result)
    return results


def _plot(result: PanelResult, path: Path, start: datetime, end: datetime, timezone: str) -> None:
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=100)
    panel = result.panel
    if panel.kind == "stat":
        lines = [f"{label}: {points[-1][1]:.2f}" for label, points in result.series.items() if points]
        ax.axis("off")
        ax.text(0.02, 0.5, "\n".join(lines) or "no data", fontsize=16, va="center")
    else:
        labels = list(result.series)
        width_days = None
        for n, label in enumerate(labels):
            points = result.series[label]
            if not points:
                continue
            times = pd.to_datetime([t for t, _ in points], unit="ns", utc=True).tz_convert(timezone)
            values = [v for _, v in points]
            if panel.kind == "bars":
                width_days = width_days or 0.8 / max(1, len(labels))
                offset = pd.Timedelta(days=(n - (len(labels) - 1) / 2) * width_days)
                ax.bar(times + offset, values, width=width_days, label=label)
            else:
                ax.plot(times, values, label=label, linewidth=1.2)
        ax.set_xlim(pd.Timestamp(start).tz_convert(timezone), pd.Timestamp(end).tz_convert(timezone))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b %H:%M", tz=timezone))
        ax.set_ylabel(panel.unit)
        ax.grid(alpha=0.3)
        if result.series:
            ax.legend(loc="upper left", fontsize=8, ncol=min(4, len(labels)))
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
    ax.set_title(panel.title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


def render(results: list[DashboardResult], out: Path, site: str, start: datetime, end: datetime, timezone: str) -> Path:
    """Write one PNG per panel and ``index.html``; returns the HTML path."""
    out.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>ongrid report {html.escape(site)}</title>",
        "<style>body{font-family:sans-serif;max-width:1040px;margin:auto}img{width:100%}</style></head><body>",
        f"<h1>ongrid report: {html.escape(site)}</h1>",
        f"<p>{start.isoformat()} to {end.isoformat()}</p>",
    ]
    for result in results:
        parts.append(f"<h2>{html.escape(result.dashboard.title)}</h2>")
        for number, panel_result in enumerate(result.panels):
            name = f"{result.dashboard.uid}-{number:02d}-{_slug(panel_result.panel.title)}.png"
            _plot(panel_result, out / name, start, end, timezone)
            panel_result.png = name
            parts.append(f"<h3>{html.escape(panel_result.panel.title)}</h3>")
            if panel_result.panel.description:
                parts.append(f"<p>{html.escape(panel_result.panel.description)}</p>")
            parts.append(f"<img src='{name}' alt='{html.escape(panel_result.panel.title)}'>")
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts))
    return index
