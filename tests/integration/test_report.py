"""``ongrid report`` from the embedded store and from InfluxDB: PNGs and one HTML page, and the
same numbers whichever store the data came from."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from PIL import Image

from services.cli import main as ongrid
from services.devtools.demo_day import day_messages, day_start
from services.recorder.backends import InfluxQLReader, Reader, SqliteStore
from services.recorder.pipeline import Recorder
from services.recorder.report.render import collect
from services.recorder.stats_job import StatsJob
from shared.config import OngridConfig, load_config
from shared.messages import DailyStats
from tests.support.recorded_store import feed, influx_url, record, store_config

SITE = "reportsite"
START = day_start("2026-02-28")


CONFIG: dict[str, object] = {"site": SITE, "tariff": {"timezone": "UTC"}, "recorder": {"battery_cost": 3000}}


async def two_days(recorder: Recorder, reader: Reader, cfg: OngridConfig) -> None:
    """The synthetic house for 48 hours, then the daily statistics of both days."""
    await feed(day_messages(SITE, START, hours=48))(recorder, reader, cfg)
    await recorder.drained(60)

    async def publish(stats: DailyStats) -> None:
        return None

    job = StatsJob(cfg, reader, publish, recorder.add_rows)
    for days in (1, 2):
        await job.once(now=START + timedelta(days=days, minutes=5))
        await recorder.drained(60)


@pytest.fixture(scope="module")
def sqlite_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = store_config(tmp_path_factory.mktemp("report"), CONFIG)
    record(path, two_days, batch_size=2000)
    return path


def test_report_writes_pngs_and_html(sqlite_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        ongrid(
            ["report", "--config", str(sqlite_config), "--from", "2026-02-28", "--to", "2026-03-01", "--out", str(out)]
        )
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "0 without data" in printed, printed
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) >= 25
    page = (out / "index.html").read_text()
    for png in pngs:
        assert f"src='{png.name}'" in page
        with Image.open(png) as image:
            assert image.size == (1000, 360)
    for title in ("Overview", "Battery health", "Economics", "Dispatcher", "Data quality"):
        assert title in page


def test_report_covers_a_runs_exact_range_with_its_time_zone_named(
    sqlite_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A demo's run, 06:00 to 06:00 UTC, not whole local days; energy in kWh, money in GBP."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        ongrid(["report", "--config", str(sqlite_config), "--from", "2026-02-28T06:00:00+00:00",
                "--to", "2026-03-01T06:00:00Z", "--out", str(out)])  # fmt: skip
    assert exit_info.value.code == 0
    page = (out / "index.html").read_text()
    assert "2026-02-28 06:00 to 2026-03-01 06:00 UTC" in page
    # The daily rows of 28 Feb and 1 Mar (keyed at midnight) fall inside: one night each judged.
    assert "<h2>Nights to sunrise</h2>" in page and "<td>2026-03</td>" in page
    # Availability is published once, at the start of the two days: nothing of it after 06:00.
    assert "1 without data: Availability (1 online)" in capsys.readouterr().out


def test_report_refuses_a_backwards_range(sqlite_config: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        ongrid(["report", "--config", str(sqlite_config), "--from", "2026-03-02", "--to", "2026-03-01"])
    assert exit_info.value.code == 2


@pytest.fixture(scope="module")
def influx_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with influx_url() as url:
        path = store_config(tmp_path_factory.mktemp("report-influx"), CONFIG, url)
        record(path, two_days, batch_size=2000)
        yield path


def test_embedded_store_and_influxdb_give_the_same_views(sqlite_config: Path, influx_config: Path) -> None:
    """InfluxQL on InfluxDB and the SQL store's buckets agree, panel by panel, on the same data."""
    end = START + timedelta(days=2)
    sqlite_cfg, influx_cfg = load_config(sqlite_config), load_config(influx_config)
    assert influx_cfg.influxdb is not None
    from_sqlite = collect(SqliteStore(Path(sqlite_cfg.recorder.sqlite_path)), SITE, START, end)
    from_influx = collect(InfluxQLReader(influx_cfg.influxdb), SITE, START, end)
    compared = 0
    for a, b in zip(from_sqlite, from_influx, strict=True):
        for pa, pb in zip(a.panels, b.panels, strict=True):
            assert set(pa.series) == set(pb.series), pa.panel.title
            for label, points in pa.series.items():
                other = dict(pb.series[label])
                assert [t for t, _ in points] == sorted(other), f"{pa.panel.title} {label}"
                for t, value in points:
                    assert value == pytest.approx(other[t], rel=1e-6, abs=1e-6), f"{pa.panel.title} {label} at {t}"
                compared += len(points)
    assert compared > 1000


def test_report_shows_the_careful_owner_figures_per_day(sqlite_config: Path, tmp_path: Path) -> None:
    from services.recorder.control_figures import day_control_figures
    from shared.energy.tariff import tariff_from_config

    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        ongrid(
            ["report", "--config", str(sqlite_config), "--from", "2026-02-28", "--to", "2026-03-01", "--out", str(out)]
        )
    assert exit_info.value.code == 0
    page = (out / "index.html").read_text()
    assert "<h2>Careful-owner figures</h2>" in page
    cfg = load_config(sqlite_config)
    store = SqliteStore(Path(cfg.recorder.sqlite_path))
    for day in (date(2026, 2, 28), date(2026, 3, 1)):
        figures = day_control_figures(cfg, store, tariff_from_config(cfg.tariff), day)
        assert figures is not None
        row = (
            f"<tr><td>{day}</td><td>{figures.unplanned_battery_export_wh:.0f} Wh</td>"
            f"<td>{figures.peak_import_wh:.0f} Wh</td><td>{figures.opposite_sign_s / 60:.1f} min</td></tr>"
        )
        assert row in page
