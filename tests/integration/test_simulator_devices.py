"""The running simulator read by clients the project did not write: pymodbus, mbpoll, pysolarmanv5."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.simulator.runtime import Simulator
from shared.config import load_config
from shared.modbus.sofar_pdu import CLIENT_PDUS, HeartbeatRequest, PassiveModeRequest
from tests.support import free_port

SEED = Path(__file__).resolve().parents[2] / "deploy" / "scenarios" / "seed-house.yaml"


def scenario(tmp_path: Path, ports: dict[str, int], mqtt_port: int | None = None) -> Path:
    data = yaml.safe_load(SEED.read_text())
    sim = data["simulator"]
    sim["run_dir"] = str(tmp_path)
    sim["start"] = "2026-06-01T12:00:00+01:00"
    sim["inverter"]["passive_timeout_s"] = 30
    for device in sim["devices"]:
        listen = device["listen"]
        if "port" in listen:
            listen["port"] = ports[device["id"]]
        if "device" in listen:
            listen["device"] = str(tmp_path / Path(listen["device"]).name)
    sim["control"] = {"host": "127.0.0.1", "port": ports["control"], "truth_interval_s": 0.2, "mqtt": True}
    if mqtt_port is not None:
        data["mqtt"]["port"] = mqtt_port
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    ports = {name: free_port() for name in ("inv1", "inv1-v5", "pv-meter", "control")}
    cfg = load_config(scenario(tmp_path, ports))
    out = io.StringIO()
    simulator = Simulator(cfg, speed=10, out=out)
    async with simulator:
        await asyncio.sleep(0.3)
        yield simulator


def http(sim: Simulator, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{sim.control_port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


async def control(sim: Simulator, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return await asyncio.to_thread(http, sim, method, path, body)


def tcp_port(sim: Simulator, device: str) -> int:
    return int(sim.endpoints[device].rsplit(":", 1)[1])


async def test_a_held_clock_stands_at_the_start_until_released(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("inv1", "inv1-v5", "pv-meter", "control")}
    simulator = Simulator(load_config(scenario(tmp_path, ports)), speed=600, hold=True, out=io.StringIO())
    async with simulator:
        await asyncio.sleep(1.0)  # 10 simulated minutes, were it running
        held = await control(simulator, "GET", "/clock")
        truth = await control(simulator, "GET", "/truth")
        assert held["held"] is True and held["sim_time"] == held["start"] == "2026-06-01T11:00:00+00:00"
        assert truth["sim_time"].startswith("2026-06-01T11:00:00") and truth["speed"] == 0.0
        with pytest.raises(urllib.error.HTTPError) as refused:
            await control(simulator, "POST", "/clock", {"run": False})
        assert refused.value.code == 400
        released = await control(simulator, "POST", "/clock", {"run": True})
        assert released["held"] is False and released["speed"] == 600
        await asyncio.sleep(1.0)
        running = await control(simulator, "GET", "/clock")
        truth = await control(simulator, "GET", "/truth")
        assert running["sim_time"] > running["start"] and truth["speed"] == 600
        assert truth["sim_time"] > "2026-06-01T11:05"  # a wall second or more at 600x


async def test_announces_every_device_as_json(sim: Simulator) -> None:
    lines = [json.loads(line) for line in sim.out.getvalue().splitlines()]  # type: ignore[attr-defined]
    by_device = {line["device"]: line for line in lines}
    assert {"inv1", "inv1-rtu", "inv1-v5", "grid", "pv-meter", "bat1", "control"} <= set(by_device)
    assert by_device["inv1-v5"]["protocol"] == "solarman_v5"
    assert by_device["grid"]["model"] == "eastron_sdm120"
    assert all(set(line) == {"device", "model", "protocol", "endpoint"} for line in lines)


async def test_pymodbus_reads_the_inverter_and_commands_passive_mode(sim: Simulator) -> None:
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient("127.0.0.1", port=tcp_port(sim, "inv1"), timeout=2, retries=0)
    for pdu in CLIENT_PDUS:
        client.register(pdu)
    await client.connect()
    try:
        block = await client.read_holding_registers(0x0200, count=0x46, device_id=1)
        assert not block.isError()
        regs = block.registers
        truth = await control(sim, "GET", "/truth")
        soc = regs[0x10]
        assert abs(soc - truth["soc_pct"]) <= 1.5
        assert regs[0x15] * 10 == pytest.approx(truth["pv_w"], abs=600)  # PV at June noon, 0.01 kW
        response = await client.execute(False, PassiveModeRequest(0x0102, 1500, dev_id=1))
        assert response.status_word & 0xFF == 0  # accepted (A: the .status property is shadowed by pymodbus)
        await asyncio.sleep(0.8)
        truth = await control(sim, "GET", "/truth")
        assert truth["inverter"]["control"] == "passive"
        assert truth["battery_w"] == pytest.approx(-1500, abs=1)
        block = await client.read_holding_registers(0x020D, count=1, device_id=1)
        assert block.registers[0] == 150  # + charge, 0.01 kW
        beat = await client.execute(False, HeartbeatRequest(dev_id=1))
        assert not beat.isError()
        # No renewals for 30 simulated s (3 real s at x10): back to self-use.
        await asyncio.sleep(3.5)
        truth = await control(sim, "GET", "/truth")
        assert truth["inverter"]["control"] == "self_use" and truth["inverter"]["timeouts"] == 1
    finally:
        client.close()


async def test_pymodbus_reads_the_sdm120_over_rtu_pty_and_the_sdm630_over_tcp(sim: Simulator) -> None:
    from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
    from pymodbus.framer import FramerType

    rtu = AsyncModbusSerialClient(
        port=sim.endpoints["grid"], framer=FramerType.RTU, baudrate=9600, timeout=2, retries=0
    )
    await rtu.connect()
    try:
        response = await rtu.read_input_registers(0x0000, count=14, device_id=1)
        assert not response.isError()
        volts = rtu.convert_from_registers(response.registers[0:2], data_type=rtu.DATATYPE.FLOAT32)
        watts = rtu.convert_from_registers(response.registers[12:14], data_type=rtu.DATATYPE.FLOAT32)
        assert 225 < volts < 255
        truth = await control(sim, "GET", "/truth")
        assert abs(watts - truth["grid_w"]) < 0.02 * abs(truth["grid_w"]) + 400  # flows move between reads
    finally:
        rtu.close()
    tcp = AsyncModbusTcpClient("127.0.0.1", port=tcp_port(sim, "pv-meter"), timeout=2, retries=0)
    await tcp.connect()
    try:
        response = await tcp.read_input_registers(0x000C, count=2, device_id=1)
        l1 = tcp.convert_from_registers(response.registers, data_type=tcp.DATATYPE.FLOAT32)
        assert l1 > 100  # the PV meter at noon in June
    finally:
        tcp.close()


async def test_faults_silent_exception_out_of_range_and_crc(sim: Simulator) -> None:
    from pymodbus.client import AsyncModbusTcpClient
    from pymodbus.exceptions import ModbusIOException

    client = AsyncModbusTcpClient("127.0.0.1", port=tcp_port(sim, "inv1"), timeout=1, retries=0)
    await client.connect()
    try:
        await control(sim, "POST", "/faults/inv1", {"exception": 4})
        response = await client.read_holding_registers(0x0200, count=2, device_id=1)
        assert response.isError() and response.exception_code == 4
        await control(sim, "POST", "/faults/inv1", {"exception": None, "out_of_range": True})
        response = await client.read_holding_registers(0x0210, count=1, device_id=1)
        assert response.registers == [0xFFFF]
        await control(sim, "POST", "/faults/inv1/clear")
        response = await client.read_holding_registers(0x0210, count=1, device_id=1)
        assert response.registers[0] <= 100
        await control(sim, "POST", "/faults/inv1", {"silent": True})
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(0x0210, count=1, device_id=1)
    finally:
        client.close()
    await control(sim, "POST", "/faults/inv1/clear")
    faults = await control(sim, "GET", "/faults")
    assert faults["inv1"]["silent"] is False
    with pytest.raises(urllib.error.HTTPError):
        await control(sim, "POST", "/faults/inv1", {"slow": True})


@pytest.mark.skipif(
    shutil.which("mbpoll") is None, reason="Debian's mbpoll is not installed (apt-get install mbpoll)"
)
async def test_mbpoll_reads_the_inverter_over_tcp_and_the_meter_over_rtu(sim: Simulator) -> None:
    proc = await asyncio.create_subprocess_exec(
        "mbpoll", "-m", "tcp", "-p", str(tcp_port(sim, "inv1")), "-a", "1", "-0", "-t", "4", "-r", "0x0210",
        "-c", "1", "-1", "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()
    soc = int(out.decode().split("[528]:")[1].split()[0])
    assert abs(soc - (await control(sim, "GET", "/truth"))["soc_pct"]) <= 1.5
    proc = await asyncio.create_subprocess_exec(
        "mbpoll", "-m", "rtu", "-b", "9600", "-P", "none", "-a", "1", "-0", "-t", "3:float", "-B", "-r", "0",
        "-c", "1", "-1", sim.endpoints["grid"],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()
    volts = float(out.decode().split("[0]:")[1].split()[0])
    assert 225 < volts < 255


async def test_pysolarmanv5_reads_through_the_logger_and_is_dropped_when_idle(sim: Simulator) -> None:
    from pysolarmanv5 import PySolarmanV5Async

    client = PySolarmanV5Async("127.0.0.1", 2712345678, port=tcp_port(sim, "inv1-v5"), mb_slave_id=1,
                               socket_timeout=3)  # fmt: skip
    await client.connect()
    try:
        regs = await client.read_holding_registers(0x0200, 0x12)
        assert regs[0] in range(8) and regs[0x10] <= 100
        serial = await client.read_input_registers(0x2001, 7)
        assert b"".join(r.to_bytes(2, "big") for r in serial) == b"SE1ES000000001"
        # The vendor PDF's standby frame (CRC included), through the logger: 7-byte 0x42 answer.
        answer = bytes(await client.send_raw_modbus_frame(bytes.fromhex("0142010055558756")))
        assert answer[:3] == bytes([1, 0x42, 2]) and answer[4] == 0  # accepted
    finally:
        await client.disconnect()
    # The logger drops a silent client, as real ones do after ~10 s.
    await control(sim, "POST", "/faults/inv1-v5", {"idle_drop_s": 0.3})
    reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port(sim, "inv1-v5"))
    assert await asyncio.wait_for(reader.read(), 3) == b""
    writer.close()


async def test_truth_on_mqtt(tmp_path: Path, mosquitto: Any) -> None:
    import aiomqtt

    from shared.bus import Bus
    from shared.messages import SimTruth
    from shared.topics import simulator_truth

    ports = {name: free_port() for name in ("inv1", "inv1-v5", "pv-meter", "control")}
    cfg = load_config(scenario(tmp_path, ports, mqtt_port=mosquitto.port))
    async with Simulator(cfg, speed=60, out=io.StringIO()) as simulator:
        async with Bus(cfg.mqtt, site=cfg.site, service="simulator") as bus:
            runner = asyncio.create_task(simulator.run_forever(bus))
            try:
                async with aiomqtt.Client(mosquitto.host, mosquitto.port) as watcher:
                    await watcher.subscribe(simulator_truth(cfg.site))
                    message = await asyncio.wait_for(anext(aiter(watcher.messages)), 10)
                    truth = SimTruth.model_validate_json(message.payload)  # type: ignore[arg-type]
                    assert truth.speed == 60
                    assert truth.load_w == pytest.approx(truth.pv_w + truth.grid_w + truth.battery_w, abs=0.3)
            finally:
                runner.cancel()
