"""Every Grafana panel's query, with Grafana's macros substituted, returns data from a real
InfluxDB 1.6 after a simulated day went through the real recorder (spool, writer, statistics)."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from services.devtools.demo_day import day_messages, day_start
from services.devtools.devdb import Server, influxd_available, running_influxd
from services.recorder.backends import InfluxQLReader, InfluxV1Writer
from services.recorder.pipeline import Recorder
from services.recorder.rows import ns
from services.recorder.spool import Spool
from services.recorder.stats_job import StatsJob
from shared.config import OngridConfig, load_config
from shared.messages import DailyStats, InverterState

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
SITE = "dashsite"


@dataclass
class Loaded:
    server: Server
    cfg: OngridConfig
    start_ns: int
    end_ns: int
    published: list[DailyStats]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    if not influxd_available():
        pytest.skip("influxd not installed (apt-get install influxdb)")
    import asyncio

    tmp = tmp_path_factory.mktemp("dash")
    with running_influxd() as server:
        path = tmp / "ongrid.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "site": SITE,
                    "influxdb": {"api": "v1", "url": server.url, "database": "ongrid"},
                    "recorder": {"spool_dir": str(tmp / "spool"), "battery_cost": 3000.0},
                }
            )
        )
        cfg = load_config(path)
        assert cfg.influxdb is not None
        # Two days in two months: the payback band needs at least two months of savings.
        start = day_start("2026-02-28")
        published: list[DailyStats] = []

        async def go() -> None:
            recorder = Recorder(
                InfluxV1Writer(cfg.influxdb), Spool(tmp / "spool", 10**9), recorder_id="r", batch_size=2000
            )
            runner = asyncio.create_task(recorder.run())
            for topic, message in day_messages(SITE, start, hours=48):
                await recorder.handle(topic, message)
            await recorder.drained(60)

            async def publish(stats: DailyStats) -> None:
                published.append(stats)

            job = StatsJob(cfg, InfluxQLReader(cfg.influxdb), publish, recorder.add_rows)
            await job.once(now=start + timedelta(days=1, minutes=5))
            await recorder.drained(60)
            await job.once(now=start + timedelta(days=2, minutes=5))
            await recorder.drained(60)
            runner.cancel()

        asyncio.run(go())
        yield Loaded(server, cfg, ns(start), ns(start + timedelta(days=2)), published)


def grafana_substitute(query: str, site: str, start_ns: int, end_ns: int, interval: str = "5m") -> str:
    """What Grafana's InfluxDB datasource does to a raw query before sending it."""
    query = query.replace("$timeFilter", f"time >= {start_ns // 1_000_000}ms and time <= {end_ns // 1_000_000}ms")
    query = query.replace("$__interval", interval)
    return query.replace("$site", re.escape(site))


def run_influxql(server: Server, text: str) -> list[dict[str, object]]:
    url = f"{server.url}/query?" + urllib.parse.urlencode({"db": "ongrid", "q": text})
    with urllib.request.urlopen(url, timeout=10) as response:
        data = json.loads(response.read())
    result = data["results"][0]
    assert "error" not in result, f"{result.get('error')}: {text}"
    return list(result.get("series") or [])


def panel_targets() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                out.append((dashboard["uid"], panel["title"], target["query"]))
    return out


def test_dashboards_are_provisioned() -> None:
    uids = {json.loads(p.read_text())["uid"] for p in DASHBOARDS.glob("*.json")}
    assert uids == {"ongrid-overview", "ongrid-battery", "ongrid-economics", "ongrid-dispatcher", "ongrid-quality"}
    assert len(panel_targets()) >= 30


@pytest.mark.parametrize(("uid", "title", "query"), panel_targets(), ids=lambda v: str(v)[:40])
def test_every_panel_query_returns_data(loaded: Loaded, uid: str, title: str, query: str) -> None:
    text = grafana_substitute(query, SITE, loaded.start_ns, loaded.end_ns)
    series = run_influxql(loaded.server, text)
    values = [v for s in series for _, v in s["values"] if v is not None]  # type: ignore[attr-defined]
    assert values, f"{uid} / {title}: no data for {text}"


def test_site_variable_query_lists_the_site(loaded: Loaded) -> None:
    dashboard = json.loads((DASHBOARDS / "ongrid-overview.json").read_text())
    query = dashboard["templating"]["list"][0]["query"]
    series = run_influxql(loaded.server, query)
    assert [SITE] == [v for s in series for _, v in s["values"]]  # type: ignore[attr-defined]


def test_statistics_were_published_and_stored(loaded: Loaded) -> None:
    day = [s for s in loaded.published if str(s.day) == "2026-03-01"][-1]  # the final, not the partial
    assert day.pv_wh > 5000 and day.load_wh > 5000
    assert day.samples == 1440
    # The grid CT reads 1% high plus 4 W and the PV CT 1% low: the residual is exactly that error.
    expected = 0.0
    for _, message in day_messages(SITE, day_start("2026-02-28"), hours=48):
        if isinstance(message, InverterState) and message.ts.date() == day.day:
            expected += (0.01 * message.pv_power_w - 0.01 * message.grid_power_w - 4.0) / 60.0
    assert day.balance_residual_wh == pytest.approx(expected, abs=3.0)
    series = run_influxql(loaded.server, f'SELECT last("payback_years") FROM "payback" WHERE "site" = \'{SITE}\'')
    assert series and series[0]["values"][0][1] is not None  # type: ignore[index]


def test_filter_by_another_site_returns_nothing(loaded: Loaded) -> None:
    query = panel_targets()[0][2]
    assert run_influxql(loaded.server, grafana_substitute(query, "nosuchsite", loaded.start_ns, loaded.end_ns)) == []
