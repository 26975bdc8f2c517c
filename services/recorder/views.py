"""The dashboards as data: one definition, rendered twice.

``deploy/grafana/generate.py`` turns each ``Query`` into InfluxQL with Grafana's macros, and
``ongrid report`` runs the same ``Query`` through a ``Reader`` (InfluxQL on InfluxDB, SQL on the
embedded store) and plots it. So the PNG report and the Grafana panels can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Agg = Literal["mean", "max", "min", "last", "sum", "count"]


@dataclass(frozen=True)
class Query:
    measurement: str
    field: str
    agg: Agg = "mean"
    where: tuple[tuple[str, str], ...] = ()
    group_by: str | None = None
    label: str | None = None
    every: str | None = None  # a fixed bucket ("1d"); None: the dashboard's interval

    @property
    def name(self) -> str:
        return self.label or f"{self.measurement}.{self.field}"


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[Query, ...]
    kind: Literal["timeseries", "bars", "stat"] = "timeseries"
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: tuple[Panel, ...]


def q(measurement: str, field: str, agg: Agg = "mean", **kw: object) -> Query:
    where = kw.pop("where", ())
    if isinstance(where, dict):
        where = tuple(sorted(where.items()))
    return Query(measurement, field, agg, where=where, **kw)  # type: ignore[arg-type]


DAY = "1d"

OVERVIEW = Dashboard(
    "ongrid-overview",
    "ongrid / Overview",
    (
        Panel(
            "Power flow (AC bus: into the house +)",
            "watt",
            (
                q("inverter", "pv_power_w", label="PV"),
                q("inverter", "load_power_w", label="Load"),
                q("inverter", "grid_power_w", label="Grid (import +)"),
                q("inverter", "battery_power_w", label="Battery (discharge +)"),
            ),
        ),
        Panel(
            "State of charge",
            "percent",
            (q("inverter", "battery_soc_pct", label="SoC (inverter)"), q("battery", "soc_pct", group_by="device")),
        ),
        Panel("Meters by role", "watt", (q("meter", "power_w", group_by="role"),)),
        Panel("Grid voltage", "volt", (q("inverter", "grid_voltage_v", label="Grid voltage"),)),
    ),
)

BATTERY = Dashboard(
    "ongrid-battery",
    "ongrid / Battery health",
    (
        Panel(
            "Cell voltage extremes",
            "volt",
            (
                q("battery", "cell_min_v", "min", label="Lowest cell"),
                q("battery", "cell_max_v", "max", label="Highest cell"),
            ),
        ),
        Panel("Cell spread by module", "mV", (q("battery_module", "cell_spread_mv", "max", group_by="module"),)),
        Panel("Module temperature", "celsius", (q("battery_module", "temp_max_c", "max", group_by="module"),)),
        Panel("Module state of charge", "percent", (q("battery_module", "soc_pct", group_by="module"),)),
        Panel(
            "BMS limits",
            "amp",
            (
                q("battery", "limits_charge_current_a", "min", label="Charge limit"),
                q("battery", "limits_discharge_current_a", "min", label="Discharge limit"),
            ),
        ),
        Panel(
            "Pack current and alarms",
            "amp",
            (
                q("battery", "current_a", label="Current (discharge +)"),
                q("battery", "alarms_count", "max", label="Active alarms"),
            ),
        ),
    ),
)

ECONOMICS = Dashboard(
    "ongrid-economics",
    "ongrid / Economics",
    (
        Panel(
            "Daily cost",
            "currency",
            (
                q("daily_stats", "cost", "last", every=DAY, label="Cost"),
                q("daily_stats", "cost_without_battery", "last", every=DAY, label="Cost without battery"),
            ),
            kind="bars",
        ),
        Panel(
            "Daily savings", "currency", (q("daily_stats", "savings", "last", every=DAY, label="Savings"),), kind="bars"
        ),
        Panel(
            "Self sufficiency",
            "percent",
            (q("daily_stats", "self_sufficiency_pct", "last", every=DAY, label="Self sufficiency"),),
            kind="bars",
        ),
        Panel(
            "Energy by source and sink",
            "kwatth",
            (
                q("daily_stats", "pv_wh", "last", every=DAY, label="PV"),
                q("daily_stats", "import_wh", "last", every=DAY, label="Import"),
                q("daily_stats", "export_wh", "last", every=DAY, label="Export"),
                q("daily_stats", "battery_discharge_wh", "last", every=DAY, label="Battery out"),
            ),
            kind="bars",
        ),
        Panel(
            "Payback (years, 95% band)",
            "y",
            (
                q("payback", "payback_years", "last", label="Payback"),
                q("payback", "payback_low_years", "last", label="Band low"),
                q("payback", "payback_high_years", "last", label="Band high"),
            ),
            kind="stat",
            description="From the spread of monthly savings; no band under two months of data.",
        ),
        Panel(
            "Battery cycles per day",
            "none",
            (q("daily_stats", "equivalent_cycles", "last", every=DAY, label="Equivalent cycles"),),
            kind="bars",
        ),
    ),
)

DISPATCHER = Dashboard(
    "ongrid-dispatcher",
    "ongrid / Dispatcher",
    (
        Panel(
            "Plan vs actual SoC",
            "percent",
            (
                q("plan_step", "soc_pct_end", "last", label="Planned SoC"),
                q("inverter", "battery_soc_pct", label="Actual SoC"),
            ),
        ),
        Panel(
            "Battery setpoint vs actual",
            "watt",
            (
                q("decision", "setpoints_battery_power_w", "last", label="Setpoint"),
                q("inverter", "battery_power_w", label="Actual"),
            ),
        ),
        Panel("Decisions by reason", "none", (q("decision", "count", "sum", group_by="reason"),), kind="bars"),
        Panel(
            "Inverter writes per day",
            "none",
            (q("write_counters", "writes_total", "max", every=DAY, group_by="device"),),
            kind="bars",
        ),
        Panel(
            "Export by cause",
            "kwatth",
            (
                q("daily_stats", "export_by_cause_wh_battery_full", "last", every=DAY, label="Battery full"),
                q("daily_stats", "export_by_cause_wh_mode_flip", "last", every=DAY, label="Mode flip / ramp"),
                q("daily_stats", "export_by_cause_wh_policy", "last", every=DAY, label="Policy"),
            ),
            kind="bars",
        ),
    ),
)

QUALITY = Dashboard(
    "ongrid-quality",
    "ongrid / Data quality",
    (
        Panel("Availability (1 online)", "none", (q("availability", "online", "last", group_by="device"),)),
        Panel(
            "Readings per interval by device (gaps: stale)",
            "none",
            (
                q("inverter", "battery_power_w", "count", group_by="device"),
                q("meter", "power_w", "count", group_by="device"),
                q("battery", "soc_pct", "count", group_by="device"),
            ),
        ),
        Panel(
            "Energy-balance residual (load - pv - grid - battery)",
            "watth",
            (q("daily_stats", "balance_residual_wh", "last", every=DAY, label="Residual"),),
            kind="bars",
        ),
        Panel(
            "CT readings below accurate range (share)",
            "percentunit",
            (q("meter", "below_accurate_range", "mean", group_by="device"),),
        ),
        Panel(
            "Recorder backlog and losses",
            "none",
            (
                q("recorder", "backlog_points", "max", label="Backlog points"),
                q("recorder", "points_lost", "max", label="Points lost (spool bound, disk full)"),
                q("recorder", "points_rejected", "max", label="Points rejected by the database"),
            ),
        ),
        Panel("Events by code", "none", (q("event", "count", "sum", group_by="code"),), kind="bars"),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (OVERVIEW, BATTERY, ECONOMICS, DISPATCHER, QUALITY)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def influxql(
    query: Query, *, site: str = "$site", time_filter: str = "$timeFilter", interval: str = "$__interval"
) -> str:
    """InfluxQL for one query; defaults are Grafana's macros, concrete values make it runnable.

    ``site="$site"`` filters with a regex so Grafana's multi-value variable works; a concrete site
    is matched exactly.
    """
    conditions = ['"site" =~ /^$site$/' if site == "$site" else f'"site" = {_literal(site)}']
    conditions += [f"{_ident(k)} = {_literal(v)}" for k, v in query.where]
    conditions.append(time_filter)
    group = [f"time({query.every or interval})"]
    if query.group_by:
        group.append(_ident(query.group_by))
    return (
        f"SELECT {query.agg}({_ident(query.field)}) AS {_ident('value')} FROM {_ident(query.measurement)} "
        f"WHERE {' AND '.join(conditions)} GROUP BY {', '.join(group)} fill(none)"
    )


def every_seconds(every: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if not every or every[-1] not in units or not every[:-1].isdigit():
        raise ValueError(f"interval {every!r} is not like 30s, 5m, 1h or 1d")
    return int(every[:-1]) * units[every[-1]]
