"""MQTT message expiry for commands is in wall seconds, whatever clock the process follows."""

from datetime import timedelta

import pytest

from shared import clock
from shared.bus import Bus
from shared.clock import FollowedClock
from shared.config import MqttConfig
from shared.messages import InverterCommand, utc_now


class _Recorder(Bus):
    def __init__(self) -> None:
        super().__init__(MqttConfig(), site="s", service="t")
        self.sent: list[float | None] = []

    async def publish_raw(self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False,
                          expiry_s: float | None = None) -> bool:
        self.sent.append(expiry_s)
        return True


@pytest.mark.parametrize("speed", [1.0, 60.0])
async def test_command_expiry_is_converted_to_wall_seconds(speed: float) -> None:
    from datetime import UTC, datetime

    previous = clock.current()
    follower = FollowedClock()
    # a simulated clock far from wall time, as in a demo of a past day
    follower.update(datetime(2024, 1, 1, tzinfo=UTC), datetime.now(UTC), speed)
    clock.install(follower)
    try:
        bus = _Recorder()
        command = InverterCommand(ts=utc_now(), mode="standby", expires_at=utc_now() + timedelta(seconds=600))
        await bus.publish("ongrid/s/inverter/i/command", command)
        assert bus.sent[0] == pytest.approx(600 / speed, rel=0.05)
    finally:
        clock.install(previous)
