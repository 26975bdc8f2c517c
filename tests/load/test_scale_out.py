"""Many homes into two recorders sharing a subscription: every point stored exactly once.

The full figures (1,000 sites x 60 s) come from ``benchmarks/scale_out.py``; this runs the same
path at 200 sites x 20 s (8,000 messages, 400 a second) so it stays well under two minutes:
a real Mosquitto, two ``services.recorder`` processes with ``recorder.all_sites`` and one
``share_group``, and InfluxDB 1.x (``influxd``) or, when it is not installed, the embedded store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.devtools.loadgen import (
    DEVICES,
    LoadPlan,
    SeriesStats,
    problems,
    run_scale_out,
    second_messages,
)
from services.recorder.service import subscription
from shared.config import OngridConfig
from shared.contract import model_for_topic
from shared.messages import InverterState, MeterState

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_all_sites_subscribes_to_every_site_in_the_share_group() -> None:
    own = OngridConfig.model_validate({"site": "hub", "recorder": {"share_group": "recorders"}})
    assert subscription(own) == "$share/recorders/ongrid/hub/#"
    every = OngridConfig.model_validate({"site": "hub", "recorder": {"share_group": "recorders", "all_sites": True}})
    assert subscription(every) == "$share/recorders/ongrid/+/#"
    alone = OngridConfig.model_validate({"site": "hub", "recorder": {"all_sites": True}})
    assert subscription(alone) == "ongrid/+/#"


@given(site=st.integers(0, 9999), second=st.integers(0, 100_000))
def test_generated_messages_are_valid_payloads_carrying_their_sequence(site: int, second: int) -> None:
    plan = LoadPlan(sites=10_000, seconds=100_001, prefix="gen", t0=T0)
    messages = second_messages(plan, site, second)
    assert len(messages) == len(DEVICES)
    for topic, payload, qos, retain in messages:
        model = model_for_topic(topic)
        assert model is not None, topic
        message = model.model_validate_json(payload)
        assert (qos, retain) == (model.QOS, model.RETAIN)
        if isinstance(message, InverterState):
            assert message.import_energy_total_wh == second
        else:
            assert isinstance(message, MeterState)
            assert message.import_energy_wh == second
        assert (message.ts - T0).total_seconds() == second


def test_problems_names_gaps_doubles_and_strays() -> None:
    plan = LoadPlan(sites=2, seconds=3, prefix="p", t0=T0)
    good = SeriesStats(3, 3, 0.0, 2.0)
    stored = {key: good for key in plan.series()}
    assert problems(plan, stored) == []
    stored[("meter", "p0000", "grid")] = SeriesStats(2, 2, 0.0, 2.0)  # a gap
    stored[("inverter", "p0001", "inv1")] = SeriesStats(4, 3, 0.0, 2.0)  # a doubled point
    stored[("meter", "p0009", "grid")] = good  # a site that never existed
    found = problems(plan, stored)
    assert len(found) == 3
    assert any("p0000" in text and "2 points" in text for text in found)
    assert any("p0001" in text and "4 points, 3 distinct" in text for text in found)
    assert any("p0009" in text and "never wrote" in text for text in found)


@pytest.mark.slow
async def test_200_sites_into_two_recorders_stored_exactly_once(tmp_path: Path) -> None:
    result = await run_scale_out(sites=200, seconds=20, workdir=tmp_path, connections=2, drain_timeout_s=60)
    expected = 200 * 2 * 20
    assert result["messages_acked_by_broker"] == result["messages_published"] == expected
    # Per series (400 of them) exactly the sequence 0..19, each value once: no gap, no double.
    assert result["problems"] == []
    assert result["points_stored"] == expected
    written = result["points_written_per_recorder"]
    # Both recorders took a share; together they wrote each message once (plus the hub site's
    # own status rows): a group that delivered to both would write about twice as many.
    assert all(count > expected // 10 for count in written.values()), written
    assert expected <= sum(written.values()) <= expected + result["hub_points_at_most"], (
        written,
        result["hub_points_at_most"],
    )
