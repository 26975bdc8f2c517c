"""The broker is SIGKILLed, loses its disk, and comes back on the same port.

* every service is ``online`` again within 5 s of the broker (their retained availability), with
  the services' default reconnect backoff, after an outage long enough for the backoff to reach
  its cap;
* the retained state is restored by the services themselves (the broker's persistence file is
  deleted while it is down, as on a replaced broker): device availability and state, the
  dispatcher's mode and plan, the write counters;
* no command is executed twice: every 0x42 write the simulated inverter received in the run is one
  the bridge logged as a distinct command (or hand-back), and a command redelivered after the
  restart (same id) is answered as already handled, not written again.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

from shared import topics
from shared.messages import AckStatus, Availability, AvailabilityState, CommandAck, InverterCommand
from shared.modbus.sofar_pdu import PASSIVE_FUNCTION
from shared.topics import Kind
from tests.support.fault_fleet import SERVICES, FaultFleet

BACK_WITHIN_S = 5.0
# Long enough for the default backoff (0.5 s doubling) to reach its cap before the broker returns.
OUTAGE_S = 9.0


def bridge_writes(log_text: str) -> tuple[Counter[str], int]:
    """Command ids the bridge wrote for (from its JSON log), and how many hand-backs it wrote."""
    wrote: Counter[str] = Counter()
    handbacks = 0
    for line in log_text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        msg = str(entry.get("msg", ""))
        if msg.startswith("command ") and " -> accepted: wrote " in msg:
            wrote[msg.split()[1]] += 1
        elif msg.startswith("lease expired: 0x42 auto 0 W written"):
            handbacks += 1
    return wrote, handbacks


async def test_broker_killed_and_restarted(fleet: FaultFleet) -> None:
    site = fleet.site
    broker = fleet.broker
    commands = topics.inverter_command(site, "inv1")
    async with fleet.observer() as before:
        await before.wait(lambda: before.messages(commands), 15, "a command before the restart")
        sent_before = [c for c in before.messages(commands) if isinstance(c, InverterCommand)]
    log_mark = len(fleet.fleet.log_path("inverter-bridge").read_bytes())
    writes_mark = fleet.control.writes()["total"]

    assert broker.process is not None
    broker.process.send_signal(signal.SIGKILL)
    broker.process.wait(5)
    broker.process = None
    for stale in broker.workdir.glob("*.db"):
        stale.unlink()
    time.sleep(OUTAGE_S)
    assert not fleet.dead(), fleet.logs()
    broker.start()
    up_at = time.monotonic()

    retained = [fleet.service_availability(name) for name in SERVICES]
    retained += [
        fleet.device_availability(Kind.INVERTER, "inv1"),
        fleet.device_availability(Kind.METER, "grid"),
        fleet.device_availability(Kind.BMS, "bat1"),
        topics.inverter_state(site, "inv1"),
        topics.meter_state(site, "grid"),
        topics.battery_state(site, "bat1"),
        topics.inverter_counters(site, "inv1"),
        topics.mode_state(site),
        topics.dispatcher_plan(site),
    ]
    async with fleet.observer() as after:

        def online(topic: str) -> bool:
            message = after.latest(topic)
            return isinstance(message, Availability) and message.state is AvailabilityState.ONLINE

        def restored() -> bool:
            have = {s.topic for s in after.seen}
            return all(t in have for t in retained) and all(online(t) for t in retained[:8])

        try:
            await after.wait(restored, BACK_WITHIN_S - (time.monotonic() - up_at), "retained state restored")
        except AssertionError:
            have = {s.topic for s in after.seen}
            missing = [t for t in retained if t not in have or (t in retained[:8] and not online(t))]
            raise AssertionError(f"not back within {BACK_WITHIN_S} s of the broker: {missing}{fleet.logs()}") from None

        # Commanding resumes, and a redelivery of a command already executed is not executed again.
        await after.wait(lambda: after.messages(commands), 20, "a command after the restart")
        replay = sent_before[-1]
        replay_mark = len(fleet.fleet.log_path("inverter-bridge").read_bytes())
        acks = topics.inverter_ack(site, "inv1")
        replayed_at = time.monotonic()
        assert after.bus is not None
        await after.bus.publish_raw(commands, replay.to_json(), qos=1)

        def answered() -> list[CommandAck]:
            return [
                a
                for a in after.messages(acks, replayed_at)
                if isinstance(a, CommandAck) and a.command_id == replay.id
            ]

        answer = (await after.wait(answered, 10, "an answer to the redelivered command"))[0]
        assert "already handled" in (answer.reason or ""), answer
        assert answer.status is not AckStatus.ERROR or "already handled" in (answer.reason or "")

    # Ground truth: every 0x42 the inverter received since before the kill was a distinct command
    # (or hand-back) the bridge wrote once; the replay added none.
    received = [w for w in fleet.control.writes()["writes"] if w["seq"] >= writes_mark]
    passive = [w for w in received if w["function"] == PASSIVE_FUNCTION]
    wrote, handbacks = bridge_writes(fleet.fleet.log_path("inverter-bridge").read_bytes()[log_mark:].decode())
    twice = {cid: n for cid, n in wrote.items() if n > 1}
    assert not twice, f"commands written more than once: {twice}"
    assert len(passive) == sum(wrote.values()) + handbacks, (passive, wrote, handbacks)
    rewritten, _ = bridge_writes(fleet.fleet.log_path("inverter-bridge").read_bytes()[replay_mark:].decode())
    assert replay.id not in rewritten, "the redelivered command was written again"
    assert not fleet.dead(), fleet.logs()
