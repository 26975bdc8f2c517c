"""Every Grafana panel's and report figure's unit is the unit of the fields it plots, read from the
contract models (``shared/messages.py``): the unit in the field's name (``_w``, ``_wh``, ``_pct``,
...), else the unit the field declares, else its type (an ``int`` counts, a ``bool`` is a flag).

Grafana's unit ids are checked against Grafana's own table (``valueFormats/categories.ts``:
``watt`` "Watt (W)", ``watth`` "Watt-hour (Wh)" with SI prefixes, ``kwatth`` "Kilowatt-hour
(kWh)", ``percent`` 0-100, ``percentunit`` 0.0-1.0, ``volt``, ``amp``, ``mvolt``, ``celsius``,
``currencyGBP`` "Pounds (£)", ``none``; ``suffix:X`` a custom unit).
"""

from __future__ import annotations

import json
import types
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib.dates as mdates
import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from services.recorder.backends import SqliteStore
from services.recorder.report.render import PanelResult, collect, figure, time_range
from services.recorder.rows import Row, ns
from services.recorder.views import DASHBOARDS, Panel, Query, display
from shared import messages as m

REPO = Path(__file__).resolve().parents[2]

# The measurement each contract model is stored as (services/recorder/points.py).
MODELS: dict[str, type[BaseModel] | None] = {
    "inverter": m.InverterState,
    "battery": m.BatteryState,
    "battery_module": m.ModuleState,
    "meter": m.MeterState,
    "decision": m.DispatcherDecision,
    "plan_step": m.PlanStep,
    "daily_stats": m.DailyStats,
    "monthly_stats": m.DailyStats,  # sums of the daily figures (services/recorder/stats.monthly)
    "month_to_date": m.DailyStats,  # nights so far in the month (stats_job.month_to_date_rows)
    "write_counters": m.WriteCounters,
    "availability": m.Availability,
    "recorder": m.RecorderStatus,
    "event": m.Event,
    "payback": None,  # the statistics job's payback row: names carry their unit (payback_years)
}
# Fields the recorder derives while storing (points.py, stats.monthly), each with the contract
# field it comes from and the unit that leaves it with.
DERIVED: dict[tuple[str, str], tuple[str | None, str]] = {
    ("decision", "count"): (None, "count"),  # one per decision
    ("event", "count"): (None, "count"),
    # setpoints.battery_power_w, split by whether it was commanded (services/recorder/points.py).
    ("decision", "commanded_battery_w"): ("setpoints", "W"),
    ("decision", "expected_battery_w"): ("setpoints", "W"),
    ("write_counters", "writes_total"): ("writes", "count"),
    ("availability", "online"): ("state", "flag"),
    ("battery_module", "temp_max_c"): ("temps_c", "°C"),
    ("monthly_stats", "nights"): ("reached_sunrise", "count"),
    ("monthly_stats", "nights_to_sunrise"): ("reached_sunrise", "count"),
    ("month_to_date", "nights"): ("reached_sunrise", "count"),
    ("month_to_date", "nights_to_sunrise"): ("reached_sunrise", "count"),
}
# The unit words of the naming convention (DESIGN.md: "Units live in field names"); the last one in a
# name wins (``soc_pct_end`` is in %).
UNIT_WORDS = {"wh": "Wh", "w": "W", "pct": "%", "mv": "mV", "v": "V", "a": "A", "c": "°C", "years": "years"}
# Grafana's unit ids for these units (its valueFormats table).
GRAFANA_IDS = {
    "W": "watt",
    "Wh": "watth",
    "%": "percent",
    "share": "percentunit",
    "V": "volt",
    "A": "amp",
    "mV": "mvolt",
    "°C": "celsius",
    "money": "currencyGBP",
    "years": "suffix:years",
    "count": "none",
    "cycles": "none",
    "flag": "none",
}
RAW_IDS = set(GRAFANA_IDS.values()) | {"kwatth", "currency", "y", "short"}


def _unwrap(annotation: object) -> object:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner[0] if len(inner) == 1 else annotation
    return annotation


def _by_type(name: str, info: FieldInfo | None, annotation: object) -> str | None:
    for word in reversed(name.split("_")[1:]):
        if word in UNIT_WORDS:
            return UNIT_WORDS[word]
    extra = info.json_schema_extra if info is not None else None
    if isinstance(extra, dict) and "unit" in extra:
        return str(extra["unit"])
    annotation = _unwrap(annotation)
    if annotation is bool:
        return "flag"
    if annotation is int:
        return "count"
    return None


def contract_unit(model: type[BaseModel], name: str) -> str | None:
    """The unit of a stored field name in a model, following the recorder's flattening
    (``setpoints_battery_power_w``: a nested model; ``export_by_cause_wh_battery_full``: a dict;
    ``alarms_count``: the length of a tuple)."""
    fields = model.model_fields
    if name in fields:
        return _by_type(name, fields[name], fields[name].annotation)
    for field_name, info in fields.items():
        if not name.startswith(field_name + "_"):
            continue
        rest = name[len(field_name) + 1 :]
        annotation = _unwrap(info.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return contract_unit(annotation, rest)
        if typing.get_origin(annotation) is dict:
            return _by_type(field_name, info, typing.get_args(annotation)[1])
        if typing.get_origin(annotation) is tuple and rest == "count":
            return "count"
    return None


def query_unit(query: Query) -> str:
    if query.agg == "count":
        return "count"
    derived = DERIVED.get((query.measurement, query.field))
    model = MODELS[query.measurement]
    if derived is not None:
        source, unit = derived
        assert source is None or model is None or source in model.model_fields, (query, source)
    elif model is None:
        unit = _by_type(query.field, None, None)  # type: ignore[assignment]
    else:
        unit = contract_unit(model, query.field)  # type: ignore[assignment]
    assert unit is not None, f"{query.measurement}.{query.field}: not a field of {model} with a unit"
    if unit == "flag" and query.agg == "mean":
        return "share"  # the mean of a 0/1 flag is the share of time it was 1
    return unit


PANELS = [(d.uid, p) for d in DASHBOARDS for p in d.panels]


@pytest.mark.parametrize(("uid", "panel"), PANELS, ids=[f"{u}/{p.title[:30]}" for u, p in PANELS])
def test_panel_unit_is_the_unit_of_every_field_it_plots(uid: str, panel: Panel) -> None:
    units = {query.field: query_unit(query) for query in panel.queries}
    assert set(units.values()) == {panel.unit}, f"{uid} / {panel.title} is in {panel.unit}, plots {units}"


def test_grafana_shows_each_panel_in_its_unit() -> None:
    generated = {}
    for path in (REPO / "deploy" / "grafana" / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            generated[(dashboard["uid"], panel["title"])] = panel["fieldConfig"]["defaults"]["unit"]
    for uid, panel in PANELS:
        assert generated[(uid, panel.title)] == GRAFANA_IDS[panel.unit], (uid, panel.title)
    # Not kWh on Wh: the seed's 7.57 kWh day read 7570 under "kwatth".
    assert "kwatth" not in generated.values()
    assert display("money", "EUR").grafana == "currencyEUR" and display("money", "ZAR").grafana == "currency:ZAR"


def test_report_axes_name_units_people_read_never_grafana_ids() -> None:
    for _, panel in PANELS:
        label = display(panel.unit, "GBP").label
        assert label not in RAW_IDS, (panel.title, label)
    assert display("Wh").label == "kWh" and display("Wh").factor == 0.001
    assert display("money", "GBP").label == "GBP"


START = datetime(2026, 6, 21, tzinfo=UTC)
END = START + timedelta(days=1)


def _panel(title: str) -> Panel:
    return next(p for _, p in PANELS if p.title == title)


def test_report_figure_converts_wh_to_kwh_and_names_axes() -> None:
    panel = _panel("Energy by source and sink")
    result = PanelResult(panel, {"PV": [(ns(START), 7570.0)]})
    fig = figure(result, START, END, "Europe/London")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "kWh"
    assert ax.get_xlabel() == "day (Europe/London)"
    assert [bar.get_height() for bar in ax.patches] == pytest.approx([7.57])
    money = figure(PanelResult(_panel("Daily cost"), {"Cost": [(ns(START), 1.85)]}), START, END, "UTC", "EUR")
    assert money.axes[0].get_ylabel() == "EUR"
    stat = figure(PanelResult(_panel("Payback (years, 95% band)"), {"Payback": [(ns(START), 7.5)]}), START, END, "UTC")
    assert "Payback: 7.50 years" in stat.axes[0].texts[0].get_text()


@pytest.mark.parametrize("zone", ["Europe/London", "America/New_York", "Asia/Tokyo"])
def test_a_days_bars_stand_on_that_day_whatever_the_run_and_zone(zone: str) -> None:
    """The demo's run is 00:00-24:00 UTC (01:00-01:00 BST): its day's cost and its "cost without
    battery" were drawn as two bars across the hours of the run (03:00-13:00 and 13:00-22:30), as if
    one were the morning's and the other the afternoon's. Both stand on 21 June, side by side."""
    panel = _panel("Daily cost")
    key = ns(START)  # 21 June's row, keyed at UTC midnight of its date
    result = PanelResult(panel, {"Cost": [(key, 0.20)], "Cost without battery": [(key, 0.62)]})
    ax = figure(result, START, END, zone).axes[0]
    local = ZoneInfo(zone)
    day = (datetime(2026, 6, 21, tzinfo=local), datetime(2026, 6, 22, tzinfo=local))
    assert [mdates.num2date(x, tz=local) for x in ax.get_xlim()] == list(day)
    for bar in ax.patches:
        left = mdates.num2date(bar.get_x(), tz=local)
        right = mdates.num2date(bar.get_x() + bar.get_width(), tz=local)
        assert day[0] <= left < right <= day[1], (left, right)
    assert [label.get_text() for label in ax.get_xticklabels()][:1] == ["21 Jun"]
    # A run from 22:00 UTC on the 20th to 02:00 UTC on the 22nd holds the keys of 21 and 22 June.
    two = figure(result, START - timedelta(hours=2), END + timedelta(hours=2), zone).axes[0]
    assert [mdates.num2date(x, tz=local) for x in two.get_xlim()] == [day[0], day[1] + timedelta(days=1)]
    # A year of days: about ten labels, not 365 on top of each other.
    year = figure(result, START, START + timedelta(days=365), zone).axes[0]
    assert 5 <= len(year.get_xticks()) <= 12


def test_report_range_names_its_time_zone() -> None:
    assert time_range(START, END, "Europe/London") == "2026-06-21 01:00 to 2026-06-22 01:00 Europe/London"
    assert time_range(START, END, "UTC") == "2026-06-21 00:00 to 2026-06-22 00:00 UTC"


def test_legends_are_the_same_in_grafana_and_the_report(tmp_path: Path) -> None:
    """A grouped query's series is "<label> <tag value>" in both (not "soc_pct device=bat1")."""
    store = SqliteStore(tmp_path / "store.sqlite")
    tags = {"site": "s", "kind": "bms", "device": "bat1", "role": "bms"}
    store.write([Row.make("battery", tags, {"soc_pct": 55.0}, ns(START + timedelta(hours=1)))])
    results = collect(store, "s", START, END)
    soc = next(p for r in results for p in r.panels if p.panel.title == "State of charge")
    assert "SoC (BMS) bat1" in soc.series
    overview = json.loads((REPO / "deploy" / "grafana" / "dashboards" / "ongrid-overview.json").read_text())
    aliases = [t["alias"] for p in overview["panels"] if p["title"] == "State of charge" for t in p["targets"]]
    assert aliases == ["SoC (inverter)", "SoC (BMS) $tag_device"]
    for _, panel in PANELS:
        for query in panel.queries:
            assert query.label, f"{panel.title}: {query.field} has no legend label"
    store.close()
