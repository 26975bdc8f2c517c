"""The dashboards as data: one definition, rendered twice.

``deploy/grafana/generate.py`` turns each ``Query`` into InfluxQL with Grafana's macros, and
``ongrid report`` runs the same ``Query`` through a ``Reader`` (InfluxQL on InfluxDB, SQL on the
embedded store) and plots it. So the PNG report and the Grafana panels can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Agg = Literal["mean", "max", "min", "last", "sum", "count"]

# The unit of the numbers a panel plots, as stored: the suffix of the contract's field names
# (``_w``, ``_wh``, ``_pct``, ...) or, where a name carries none, the contract's ``unit``. A test
# reads every panel's unit against the fields it plots. "share" is a 0-1 fraction (the mean of a
# 0/1 flag), "flag" a 0/1 state, "money" the tariff's currency.
Unit = Literal["W", "Wh", "%", "share", "V", "A", "mV", "°C", "money", "years", "count", "cycles", "flag"]


@dataclass(frozen=True)
class Display:
    """How one unit is shown: Grafana's unit id, and the report's axis label and scale."""

    grafana: str
    label: str
    factor: float = 1.0


# Grafana's unit ids (its valueFormats categories): ``watth`` is "Watt-hour (Wh)" with SI
# prefixes, so 7570 Wh shows as 7.57 kWh; the report converts to kWh itself.
DISPLAY: dict[str, Display] = {
    "W": Display("watt", "W"),
    "Wh": Display("watth", "kWh", 0.001),
    "%": Display("percent", "%"),
    "share": Display("percentunit", "%", 100.0),
    "V": Display("volt", "V"),
    "A": Display("amp", "A"),
    "mV": Display("mvolt", "mV"),
    "°C": Display("celsius", "°C"),
    "years": Display("suffix:years", "years"),
    "count": Display("none", "count"),
    "cycles": Display("none", "cycles"),
    "flag": Display("none", "1 = yes, 0 = no"),
}
# Grafana's own currency units; any other currency is shown as Grafana's custom ``currency:CODE``.
GRAFANA_CURRENCIES = frozenset({"USD", "GBP", "EUR", "JPY", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK"})


def display(unit: str, currency: str = "GBP") -> Display:
    """How ``unit`` is shown; money in ``currency`` (the tariff's)."""
    if unit == "money":
        grafana = f"currency{currency}" if currency in GRAFANA_CURRENCIES else f"currency:{currency}"
        return Display(grafana, currency)
    return DISPLAY[unit]


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

    def legend(self, tag: str | None = None) -> str:
        """The series' name in a legend, the same in Grafana and the report: the label, followed
        by the tag's value for a grouped query (``SoC (BMS) bat1``)."""
        if not self.group_by:
            return self.name
        return f"{self.label} {tag}" if self.label else str(tag)


@dataclass(frozen=True)
class Panel:
    title: str
    unit: Unit
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
            "W",
            (
                q("inverter", "pv_power_w", label="PV"),
                q("inverter", "load_power_w", label="Load"),
                q("inverter", "grid_power_w", label="Grid (import +)"),
                q("inverter", "battery_power_w", label="Battery (discharge +)"),
            ),
        ),
        Panel(
            "State of charge",
            "%",
            (
                q("inverter", "battery_soc_pct", label="SoC (inverter)"),
                q("battery", "soc_pct", group_by="device", label="SoC (BMS)"),
            ),
        ),
        Panel("Meters by role", "W", (q("meter", "power_w", group_by="role", label="Meter"),)),
        Panel("Grid voltage", "V", (q("inverter", "grid_voltage_v", label="Grid voltage"),)),
    ),
)

BATTERY = Dashboard(
    "ongrid-battery",
    "ongrid / Battery health",
    (
        Panel(
            "Cell voltage extremes",
            "V",
            (
                q("battery", "cell_min_v", "min", label="Lowest cell"),
                q("battery", "cell_max_v", "max", label="Highest cell"),
            ),
        ),
        Panel(
            "Cell spread by module",
            "mV",
            (q("battery_module", "cell_spread_mv", "max", group_by="module", label="Module"),),
        ),
        Panel(
            "Module temperature",
            "°C",
            (q("battery_module", "temp_max_c", "max", group_by="module", label="Module"),),
        ),
        Panel(
            "Module state of charge", "%", (q("battery_module", "soc_pct", group_by="module", label="Module"),)
        ),
        Panel(
            "BMS limits",
            "A",
            (
                q("battery", "limits_charge_current_a", "min", label="Charge limit"),
                q("battery", "limits_discharge_current_a", "min", label="Discharge limit"),
            ),
        ),
        Panel("Pack current", "A", (q("battery", "current_a", label="Current (discharge +)"),)),
        Panel("Active alarms", "count", (q("battery", "alarms_count", "max", label="Active alarms"),)),
        Panel(
            "Daily SoC range",
            "%",
            (
                q("daily_stats", "soc_min_pct", "last", every=DAY, label="Lowest SoC"),
                q("daily_stats", "soc_max_pct", "last", every=DAY, label="Highest SoC"),
            ),
            kind="bars",
            description="How much of the battery the house uses: the day's lowest and highest SoC.",
        ),
        Panel(
            "SoC at first light",
            "%",
            (
                q("daily_stats", "soc_at_sunrise_pct", "last", every=DAY, label="SoC at first light"),
                q("daily_stats", "discharge_stop_pct", "last", every=DAY, label="Stops discharging at"),
            ),
            kind="bars",
            description="A night is made when the SoC at first light is above where the battery stops "
            "discharging (the reserve; the floor in mode off) by more than 1 point.",
        ),
        Panel(
            "Nights to sunrise per month",
            "count",
            (
                q("month_to_date", "nights_to_sunrise", "last", every=DAY, label="Nights made"),
                q("month_to_date", "nights", "last", every=DAY, label="Nights"),
            ),
            kind="bars",
            description="The month so far, as of each day: nights the battery lasted to first light, of "
            "the nights judged. A month's last bar is its total.",
        ),
    ),
)

ECONOMICS = Dashboard(
    "ongrid-economics",
    "ongrid / Economics",
    (
        Panel(
            "Daily cost",
            "money",
            (
                q("daily_stats", "cost", "last", every=DAY, label="Cost"),
                q("daily_stats", "cost_without_battery", "last", every=DAY, label="Cost without battery"),
            ),
            kind="bars",
        ),
        Panel(
            "Daily savings", "money", (q("daily_stats", "savings", "last", every=DAY, label="Savings"),), kind="bars"
        ),
        Panel(
            "Self sufficiency",
            "%",
            (q("daily_stats", "self_sufficiency_pct", "last", every=DAY, label="Self sufficiency"),),
            kind="bars",
        ),
        Panel(
            "Energy by source and sink",
            "Wh",
            (
                q("daily_stats", "pv_wh", "last", every=DAY, label="PV"),
                q("daily_stats", "import_wh", "last", every=DAY, label="Import"),
                q("daily_stats", "export_wh", "last", every=DAY, label="Export"),
                q("daily_stats", "battery_discharge_wh", "last", every=DAY, label="Battery out"),
            ),
            kind="bars",
        ),
        Panel(
            "Battery out in the peak window",
            "Wh",
            (
                q("daily_stats", "peak_discharge_wh", "last", every=DAY, label="Battery out at peak"),
                q("daily_stats", "battery_discharge_wh", "last", every=DAY, label="Battery out"),
            ),
            kind="bars",
            description="Energy the battery delivered while the import price was in the upper half of "
            "the day's range (a two-rate tariff's peak hours).",
        ),
        Panel(
            "Payback (years, 95% band)",
            "years",
            (
                q("payback", "payback_years", "last", label="Payback"),
                q("payback", "payback_low_years", "last", label="Band low"),
                q("payback", "payback_high_years", "last", label="Band high"),
            ),
            kind="stat",
            description="From the spread of monthly savings; no band under two months of data. Needs "
            "recorder.battery_cost (the installed cost) in the config.",
        ),
        Panel(
            "Battery cycles per day",
            "cycles",
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
            "%",
            (
                q("plan_step", "soc_pct_end", "last", label="Planned SoC"),
                q("inverter", "battery_soc_pct", label="Actual SoC"),
            ),
        ),
        Panel(
            "Battery setpoint vs actual",
            "W",
            (
                q("decision", "commanded_battery_w", "last", label="Setpoint (sent)"),
                q("decision", "expected_battery_w", "last", label="Expected (inverter's own self-use)"),
                q("inverter", "battery_power_w", label="Actual"),
            ),
            description="Setpoint: the battery power the dispatcher commanded. Expected: while it has "
            "handed the inverter its own self-use, what that is expected to do (no command was sent).",
        ),
        Panel(
            "Decisions by reason",
            "count",
            (q("decision", "count", "sum", group_by="reason", label="Decisions"),),
            kind="bars",
        ),
        Panel(
            "Inverter writes per day",
            "count",
            (q("write_counters", "writes_total", "max", every=DAY, group_by="device", label="Writes"),),
            kind="bars",
        ),
        Panel(
            "Export by cause",
            "Wh",
            (
                q("daily_stats", "export_causes_wh_battery_full", "last", every=DAY, label="Battery full"),
                q("daily_stats", "export_causes_wh_flip_flop", "last", every=DAY, label="Flip-flop / lag"),
                q("daily_stats", "export_causes_wh_forecast_error", "last", every=DAY, label="Forecast error"),
                q("daily_stats", "export_causes_wh_planned", "last", every=DAY, label="Planned (for money)"),
                q("daily_stats", "export_causes_wh_power_limit", "last", every=DAY, label="Power limit"),
            ),
            kind="bars",
            description="Why energy left the house; the causes add up to the day's export. Forecast error: "
            "surplus the plan's forecast missed, which perfect foresight would have stored.",
        ),
    ),
)

QUALITY = Dashboard(
    "ongrid-quality",
    "ongrid / Data quality",
    (
        Panel(
            "Availability (1 online)",
            "flag",
            (q("availability", "online", "last", group_by="device", label="Online"),),
        ),
        Panel(
            "Readings per interval by device (gaps: stale)",
            "count",
            (
                q("inverter", "battery_power_w", "count", group_by="device", label="Inverter"),
                q("meter", "power_w", "count", group_by="device", label="Meter"),
                q("battery", "soc_pct", "count", group_by="device", label="BMS"),
            ),
        ),
        Panel(
            "Energy-balance residual (load - pv - grid - battery)",
            "Wh",
            (q("daily_stats", "balance_residual_wh", "last", every=DAY, label="Residual"),),
            kind="bars",
        ),
        Panel(
            "CT readings below accurate range (share)",
            "share",
            (q("meter", "below_accurate_range", "mean", group_by="device", label="Below range"),),
        ),
        Panel(
            "Recorder backlog and losses",
            "count",
            (
                q("recorder", "backlog_points", "max", label="Backlog points"),
                q("recorder", "points_lost", "max", label="Points lost (spool bound, disk full)"),
                q("recorder", "points_rejected", "max", label="Points rejected by the database"),
            ),
        ),
        Panel("Events by code", "count", (q("event", "count", "sum", group_by="code", label="Events"),), kind="bars"),
        Panel(
            "SoC: inverter vs BMS",
            "%",
            (
                q("inverter", "battery_soc_pct", group_by="device", label="SoC (inverter)"),
                q("battery", "soc_pct", group_by="device", label="SoC (BMS)"),
            ),
            description="The same battery as each device counts it. Apart by more than "
            "dispatcher.soc_disagreement_pct for dispatcher.soc_disagreement_s: a soc_disagreement event; "
            "the dispatcher plans and controls on the BMS's (its decisions' soc_source).",
        ),
        Panel(
            "SoC disagreements (inverter vs BMS)",
            "count",
            (q("event", "count", "sum", where={"code": "soc_disagreement"}, label="SoC disagreement raised"),),
            kind="bars",
            description="The dispatcher's soc_disagreement events: the inverter's and the BMS's SoC apart for "
            "longer than dispatcher.soc_disagreement_s; the event names both values and both devices.",
        ),
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
