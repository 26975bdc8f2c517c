from datetime import UTC, datetime, timedelta

import pytest

from shared import clock
from shared.clock import FollowedClock
from shared.messages import utc_now


def test_followed_clock_runs_at_the_simulator_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([100.0, 102.0])
    monkeypatch.setattr(clock.time, "monotonic", lambda: next(ticks))
    follower = FollowedClock()
    sim = datetime(2026, 4, 1, 6, 0, tzinfo=UTC)
    follower.update(sim, datetime.now(UTC), speed=60)
    assert follower.synced
    # two wall seconds at 60x are two simulated minutes (within the transit-delay correction)
    assert follower.now() - sim == pytest.approx(timedelta(minutes=2), abs=timedelta(seconds=2))


def test_unsynced_follower_answers_wall_time() -> None:
    follower = FollowedClock()
    assert not follower.synced
    assert abs((follower.now() - datetime.now(UTC)).total_seconds()) < 1


def test_utc_now_asks_the_installed_clock() -> None:
    class Fixed:
        def now(self) -> datetime:
            return datetime(2030, 1, 1, tzinfo=UTC)

    previous = clock.current()
    clock.install(Fixed())
    try:
        assert utc_now() == datetime(2030, 1, 1, tzinfo=UTC)
    finally:
        clock.install(previous)


def test_held_sim_clock_stands_at_its_start_until_released() -> None:
    from services.simulator.clock import SimClock

    now = [100.0]
    start = datetime(2026, 6, 21, tzinfo=UTC)
    sim = SimClock(start, speed=600, monotonic=lambda: now[0], held=True)
    now[0] = 130.0  # 30 wall seconds of services starting: no simulated time passes
    assert sim.now() == start and sim.rate == 0.0
    assert sim.release() is True
    assert sim.now() == start  # the day starts at its start, not 30 x 600 s into it
    now[0] = 131.0
    assert sim.now() == start + timedelta(seconds=600) and sim.rate == 600
    assert sim.release() is False  # released once; a second call changes nothing
    assert sim.now() == start + timedelta(seconds=600)


def test_followed_clock_stands_still_while_the_simulator_is_held(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([100.0, 160.0])
    monkeypatch.setattr(clock.time, "monotonic", lambda: next(ticks))
    follower = FollowedClock()
    sim = datetime(2026, 6, 21, tzinfo=UTC)
    follower.update(sim, datetime.now(UTC), speed=0.0)  # a held simulator publishes speed 0
    assert follower.now() == sim
