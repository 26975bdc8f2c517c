"""The recorder against a database outage and a SIGKILL, with the whole fleet publishing.

Everything the fleet published in a window (seen by a passive tap on the broker) is turned into
rows by the recorder's own layout and compared, point by point, with what InfluxDB 1.x holds for
the window: nothing missing, nothing extra (a doubled point would be an extra time in a series).
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from datetime import datetime, timedelta

import pytest

from services.recorder.rows import ns
from shared import topics
from shared.messages import RecorderStatus, SimTruth
from tests.support.fault_fleet import SPEED, FaultFleet, Observer, expected_rows, stored_rows

MARGIN_S = 30.0  # simulated seconds kept off each end of the window (in-flight at the edges)


def sim_now(observer: Observer, site: str) -> datetime:
    truth = observer.latest(topics.simulator_truth(site))
    assert isinstance(truth, SimTruth), "no simulator truth seen"
    return truth.sim_time


async def settle(fleet: FaultFleet, observer: Observer) -> None:
    """Wait until the recorder says the database is fine and nothing waits in its spool."""
    status_topic = topics.recorder_state(fleet.site, "recorder")

    def drained() -> bool:
        status = observer.latest(status_topic)
        return isinstance(status, RecorderStatus) and status.database_ok and status.backlog_points == 0

    await observer.wait(drained, 60, "the recorder's backlog written")


def compare(
    fleet: FaultFleet, observer: Observer, t0: datetime, t1: datetime, skip: frozenset[str] = frozenset()
) -> tuple[int, int]:
    assert fleet.influx is not None
    lo, hi = ns(t0), ns(t1)
    expected = {key for key in expected_rows(observer.seen, lo, hi) if key[0] not in skip}
    stored = stored_rows(fleet.influx.url, {m for m, _, _ in expected}, lo, hi)
    doubled = [key for key, n in Counter(stored).items() if n > 1]
    missing = expected - set(stored)
    extra = set(stored) - expected
    by_measurement = Counter(m for m, _, _ in missing)
    assert not missing, f"{len(missing)} of {len(expected)} points lost: {dict(by_measurement)}{fleet.log('recorder')}"
    assert not doubled and not extra, f"doubled {doubled[:5]}, extra {sorted(extra)[:5]}"
    return len(expected), len(stored)


@pytest.fixture
def influx_fleet(fleet: FaultFleet) -> FaultFleet:
    if fleet.influx is None:
        pytest.skip("influxd is not installed (apt-get install influxdb): the recorder cases need InfluxDB 1.x")
    return fleet


async def test_influxdb_down_for_a_simulated_minute_loses_and_doubles_nothing(influx_fleet: FaultFleet) -> None:
    fleet = influx_fleet
    assert fleet.influx is not None
    async with fleet.observer() as observer:
        await observer.wait(lambda: observer.latest(topics.simulator_truth(fleet.site)), 10, "simulator truth")
        await asyncio.sleep(MARGIN_S / SPEED + 0.5)
        t0 = sim_now(observer, fleet.site)
        fleet.influx.stop()
        down_at = sim_now(observer, fleet.site)
        await observer.wait(
            lambda: (sim_now(observer, fleet.site) - down_at).total_seconds() >= 60, 30, "60 simulated s"
        )
        spooled = list((fleet.workdir / "spool").rglob("*.seg"))
        assert spooled, "rows published while the database is down must wait in the spool"
        status = observer.latest(topics.recorder_state(fleet.site, "recorder"))
        assert isinstance(status, RecorderStatus) and not status.database_ok and status.backlog_points > 0
        fleet.influx.start()
        await settle(fleet, observer)
        await asyncio.sleep(MARGIN_S / SPEED + 1.0)
        t1 = sim_now(observer, fleet.site)
    window = (t0 + timedelta(seconds=MARGIN_S), t1 - timedelta(seconds=MARGIN_S))
    expected, _ = compare(fleet, observer, *window)
    assert expected > 100, f"only {expected} points in the window"
    assert not fleet.dead(), fleet.logs()


async def test_recorder_sigkill_and_restart_loses_nothing(influx_fleet: FaultFleet) -> None:
    fleet = influx_fleet
    async with fleet.observer() as observer:
        await observer.wait(lambda: observer.latest(topics.simulator_truth(fleet.site)), 10, "simulator truth")
        await settle(fleet, observer)
        await asyncio.sleep(MARGIN_S / SPEED + 0.5)
        t0 = sim_now(observer, fleet.site)
        fleet.kill("recorder", signal.SIGKILL)
        await asyncio.sleep(2.0)  # 40 simulated seconds of the fleet publishing to nobody
        fleet.restart("recorder")
        await asyncio.sleep(2.0)
        await settle(fleet, observer)
        await asyncio.sleep(MARGIN_S / SPEED + 1.0)
        t1 = sim_now(observer, fleet.site)
    # Commands carry an MQTT message expiry (a stale command must die in the broker, not reach the
    # inverter late), and the broker applies it to every subscriber: a command published while the
    # recorder is away expires in its queue too. Its outcome is still recorded: the bridge's ack
    # (no expiry) carries the id, status and applied setpoint, and acks are counted here.
    window = (t0 + timedelta(seconds=MARGIN_S), t1 - timedelta(seconds=MARGIN_S))
    expected, _ = compare(fleet, observer, *window, skip=frozenset({"command"}))
    assert expected > 100
    assert not fleet.dead(), fleet.logs()
