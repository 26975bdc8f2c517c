"""The committed Grafana provisioning is what deploy/grafana/generate.py makes from views.py."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from services.recorder.views import DASHBOARDS, Query, influxql

GENERATOR = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "generate.py"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("grafana_generate", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_provisioning_is_fresh() -> None:
    for path, text in _generator().outputs().items():
        assert path.exists(), f"{path} missing: run python deploy/grafana/generate.py"
        assert path.read_text() == text, f"{path} is stale: run python deploy/grafana/generate.py"


def test_every_query_uses_the_grafana_macros() -> None:
    for dashboard in DASHBOARDS:
        for panel in dashboard.panels:
            for query in panel.queries:
                text = influxql(query)
                assert "$timeFilter" in text and "/^$site$/" in text
                assert ("$__interval" in text) != bool(query.every)


def test_concrete_query_quotes_names_and_values() -> None:
    text = influxql(
        Query("meter", "power_w", "mean", where=(("role", "it's"),), group_by="device"),
        site="home",
        time_filter="time >= 0",
        interval="60s",
    )
    assert text == (
        'SELECT mean("power_w") AS "value" FROM "meter" WHERE "site" = \'home\' AND "role" = \'it\\\'s\' '
        'AND time >= 0 GROUP BY time(60s), "device" fill(none)'
    )
    assert not re.search(r"\$\w", text)
