"""``ongrid backtest --from-store``: a simulated fortnight of fleet messages goes through the real
recorder into the embedded store and into a real InfluxDB, and the backtest replays the house's
recorded load and PV from there; a silence it cannot bridge stops it with the flow and the time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from services.backtest.data import DataError
from services.backtest.store import STEP_S, store_series
from services.cli import main as ongrid
from services.devtools.demo_day import day_messages, day_start
from services.recorder.backends import InfluxQLReader
from shared.config import load_config
from shared.messages import InverterState, Message, MeterRole, MeterState
from tests.support.recorded_store import feed, influx_url, record, store_config

SITE = "storesite"
START = day_start("2026-03-01")
DAYS = 14
FIRST, LAST = date(2026, 3, 1), date(2026, 3, 14)


def fortnight(hole: tuple[datetime, timedelta] | None = None) -> Iterator[tuple[str, Message]]:
    """Five-minute fleet messages for 14 days (the synthetic house of ``demo_day``), less a silence."""
    for topic, message in day_messages(SITE, START, step_s=STEP_S, hours=24 * DAYS):
        if hole is not None and hole[0] <= message.ts < hole[0] + hole[1]:
            continue
        yield topic, message


# The site's config beside its store: a 10 kWh battery, days in the UK's time zone.
CONFIG: dict[str, object] = {
    "site": SITE,
    "tariff": {"timezone": "Europe/London"},
    "batteries": [{"id": "bat1", "transport": {"kind": "modbus_tcp", "host": "localhost"}, "usable_kwh": 10.0}],
    "dispatcher": {"battery": "bat1"},
}


@pytest.fixture(scope="module")
def sqlite_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = store_config(tmp_path_factory.mktemp("store"), CONFIG)
    record(path, feed(fortnight()))
    return path


def truth() -> tuple[float, float]:
    """The fortnight's load and PV in kWh as published: the inverter's load, the PV meter."""
    load = pv = 0.0
    for _, message in fortnight():
        if isinstance(message, InverterState):
            load += message.load_power_w * STEP_S / 3.6e6
        elif isinstance(message, MeterState) and message.role is MeterRole.PV:
            pv += message.power_w * STEP_S / 3.6e6
    return load, pv


def test_store_series_is_the_recorded_house(sqlite_config: Path) -> None:
    series = store_series(load_config(sqlite_config), FIRST, LAST)
    assert series.step_s == STEP_S and len(series.times) == DAYS * 86400 // STEP_S
    assert series.times[0] == START and not np.isnan(series.load_w).any()
    load, pv = truth()
    assert series.load_w.sum() * STEP_S / 3.6e6 == pytest.approx(load, rel=0.01)
    assert series.pv_w.sum() * STEP_S / 3.6e6 == pytest.approx(pv, rel=0.01)


def test_cli_backtests_the_recorded_fortnight(sqlite_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        ongrid(["backtest", "--config", str(sqlite_config), "--from-store", "--start", "2026-03-01",
                "--end", "2026-03-14", "--policy", "self_use", "--json", "--no-progress"])  # fmt: skip
    assert exit_info.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["meta"]["rows"] == DAYS * 288 and out["meta"]["step_s"] == STEP_S
    self_use, none = out["policies"]["self_use"], out["policies"]["none"]
    load, _ = truth()
    assert none["load_kwh"] == pytest.approx(load, rel=0.01)
    assert self_use["savings_vs_none"] > 0 and self_use["self_sufficiency_pct"] > none["self_sufficiency_pct"]
    assert sum(self_use["export_causes_kwh"].values()) == pytest.approx(self_use["export_kwh"], abs=0.01)
    assert out["policies"]["self_use"]["nights_to_sunrise"]["2026-03"]["nights"] == DAYS  # first light each day


def test_a_silence_it_cannot_bridge_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = store_config(tmp_path, CONFIG)
    hole = (START + timedelta(days=3, hours=10), timedelta(hours=2))
    record(path, feed(fortnight(hole)))
    named = r"no load \(load_w\) recorded from 2026-03-04 10:0\d Europe/London for 1\d\d min"
    with pytest.raises(DataError, match=named):
        store_series(load_config(path), FIRST, LAST)
    with pytest.raises(SystemExit) as exit_info:
        ongrid(["backtest", "--config", str(path), "--from-store", "--start", "2026-03-01", "--end", "2026-03-14",
                "--no-progress"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "bridges silences up to 15 min" in capsys.readouterr().err.replace("\n", "")
    # The days before the silence replay.
    assert len(store_series(load_config(path), FIRST, date(2026, 3, 3)).times) == 3 * 288
    # No data at all for a range: said so.
    with pytest.raises(DataError, match="no load recorded"):
        store_series(load_config(path), date(2026, 4, 1), date(2026, 4, 2))


def test_a_short_silence_is_bridged(tmp_path: Path) -> None:
    path = store_config(tmp_path, CONFIG)
    hole = (START + timedelta(days=1, hours=12), timedelta(minutes=12))
    record(path, feed(fortnight(hole)))
    series = store_series(load_config(path), FIRST, date(2026, 3, 3))
    assert not np.isnan(series.load_w).any() and not np.isnan(series.pv_w).any()


def test_cli_needs_a_source(sqlite_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in ([], ["--from-store", "--start", "2026-03-01"], ["--from-store", "--start", "1 March", "--end", "x"]):
        with pytest.raises(SystemExit) as exit_info:
            ongrid(["backtest", "--config", str(sqlite_config), "--no-progress", *args])
        assert exit_info.value.code == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "--from-store --start DATE --end DATE" in err and "--start '1 March' is not a date" in err


@pytest.fixture(scope="module")
def influx_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with influx_url() as url:
        path = store_config(tmp_path_factory.mktemp("store-influx"), CONFIG, url)
        record(path, feed(fortnight()))
        yield path


def test_influxdb_and_the_embedded_store_replay_the_same_house(sqlite_config: Path, influx_config: Path) -> None:
    cfg = load_config(influx_config)
    assert cfg.influxdb is not None
    from_influx = store_series(cfg, FIRST, LAST, InfluxQLReader(cfg.influxdb))
    from_sqlite = store_series(load_config(sqlite_config), FIRST, LAST)
    assert list(from_influx.times) == list(from_sqlite.times)
    assert from_influx.load_w == pytest.approx(from_sqlite.load_w, abs=0.01)
    assert from_influx.pv_w == pytest.approx(from_sqlite.pv_w, abs=0.01)
