"""The shared map poller: its schedule (pure), and polls through a real Modbus TCP server in-process."""

from __future__ import annotations

import pytest

from services.simulator.servers import MapSource, RegisterContext, start_server
from shared.bridge import GroupSchedule, MapPoller, PollFailed
from shared.bridge.map_poller import group_intervals
from shared.config import ModbusTcp
from shared.modbus import build_link
from shared.registers import load_map
from tests.support import free_port

SDM120 = load_map("eastron_sdm120")


def test_schedule_polls_slow_groups_at_their_own_interval() -> None:
    schedule = GroupSchedule({"fast": 2.0, "energy": 60.0})
    seen = []
    for t in range(0, 130, 2):
        due = schedule.due(float(t))
        schedule.done(due, float(t))
        if "energy" in due:
            seen.append(t)
    assert seen == [0, 60, 120]
    schedule.forget()
    assert schedule.due(131.0) == ["fast", "energy"]


def test_group_intervals_follow_poll_s_for_the_fastest_group() -> None:
    assert group_intervals(SDM120, ["fast", "energy"], 0.5) == {"fast": 0.5, "energy": 60.0}
    assert group_intervals(SDM120, ["fast", "energy"], 120) == {"fast": 120, "energy": 120}
    with pytest.raises(ValueError, match="positive"):
        GroupSchedule({"fast": 0.0})


async def test_poll_merges_groups_and_fails_whole_on_a_bad_value() -> None:
    reading = {
        "voltage_v": 241.5, "current_a": 4.2, "power_w": 1000.0, "apparent_power_va": 1010.0,
        "reactive_power_var": 50.0, "power_factor": 0.99, "phase_angle_deg": 8.0, "frequency_hz": 50.0,
        "import_energy_wh": 1234000.0, "export_energy_wh": 5000.0, "import_reactive_energy_varh": 0.0,
        "export_reactive_energy_varh": 0.0, "total_energy_wh": 1239000.0,
    }  # fmt: skip
    context = RegisterContext({1: MapSource(SDM120, lambda: reading)})
    port = free_port()
    served = await start_server(context, "modbus_tcp", host="127.0.0.1", port=port)
    link = build_link(ModbusTcp(kind="modbus_tcp", host="127.0.0.1", port=port, timeout_s=1, retries=0))
    try:
        poller = MapPoller("m", SDM120, link, 1, {"fast": 2.0, "energy": 60.0})
        before = link.transactions
        values = await poller.poll(0.0)
        assert values["power_w"] == 1000.0 and values["import_energy_wh"] == 1234000.0
        assert link.transactions - before == len(poller.plan(["fast", "energy"])) == 3  # 13 points, 3 reads
        reading["power_w"] = 2000.0
        reading["import_energy_wh"] = 9.0
        values = await poller.poll(2.0)  # energy not due: carried from the last read
        assert values["power_w"] == 2000.0 and values["import_energy_wh"] == 1234000.0
        reading["power_factor"] = 7.0  # the device cannot encode it and answers exception 4
        with pytest.raises(PollFailed, match="exception 4"):
            await poller.poll(4.0)
        reading["power_factor"] = 0.99
        values = await poller.poll(6.0)  # after a failure every group is read afresh
        assert values["import_energy_wh"] == pytest.approx(9.0, rel=1e-6)  # float32 kWh on the wire
    finally:
        await link.close()
        await served.close()
