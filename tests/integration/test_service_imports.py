"""Which heavy libraries each service has loaded once it runs, and that it loaded no other service.

Each service runs as its own process on the seed house's configuration (a site of its own, the
devices on ports and ptys where nothing answers), until it publishes its first message of its own
kind (a device's availability, the dispatcher's mode, the recorder's status); then its
``sys.modules`` is read back (written on SIGUSR1) and it is stopped. A recorder that loads HiGHS,
or a bridge that loads pandas, pays for it in start-up time and memory on a Raspberry Pi, and
means a change in another service can break it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from services.devtools.demo import SCENARIO, relocate_scenario
from shared import topics
from shared.bus import Bus
from shared.config import MqttConfig
from tests.support import REPO, Broker, free_port

SERVICES = ("inverter_bridge", "meter_bridge", "bms_bridge", "dispatcher", "recorder")
# The first thing each service publishes under its own kind, once it runs.
KIND = {
    "inverter_bridge": "inverter",
    "meter_bridge": "meter",
    "bms_bridge": "bms",
    "dispatcher": "dispatcher",
    "recorder": "recorder",
}
HEAVY = ("highspy", "pandas", "matplotlib", "pvlib", "numpy", "scipy", "influxdb_client", "pymodbus")
NOT_LOADED = {
    "inverter_bridge": {"highspy", "pandas", "matplotlib", "pvlib", "numpy", "scipy", "influxdb_client"},
    "meter_bridge": {"highspy", "pandas", "matplotlib", "pvlib", "numpy", "scipy", "influxdb_client"},
    "bms_bridge": {"highspy", "pandas", "matplotlib", "pvlib", "numpy", "scipy", "influxdb_client"},
    "dispatcher": {"matplotlib", "influxdb_client", "pymodbus"},
    "recorder": {"highspy", "matplotlib", "pymodbus"},
}
# Loaded because the service's job needs them: a check that the probe sees real imports at all.
LOADED = {
    "inverter_bridge": {"pymodbus"},
    "meter_bridge": {"pymodbus"},
    "bms_bridge": set(),
    "dispatcher": {"highspy", "pandas", "numpy"},
    "recorder": {"influxdb_client"},
}
# Run the service as ``python -m`` would; on SIGUSR1 write its sys.modules to a file.
PROBE = """
import json, os, runpy, signal, sys
out, module = sys.argv.pop(1), sys.argv.pop(1)
def dump(*_):
    with open(out + ".tmp", "w") as f:
        json.dump(sorted(sys.modules), f)
    os.replace(out + ".tmp", out)
signal.signal(signal.SIGUSR1, dump)
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def config(tmp: Path, broker: Broker) -> tuple[Path, str]:
    data = relocate_scenario(yaml.safe_load(SCENARIO.read_text()), tmp, free_port, broker.port)
    site = "i" + uuid.uuid4().hex[:10]
    data.update(site=site, clock="wall")
    data.pop("simulator", None)
    path = tmp / "ongrid.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, site


async def first_message(broker: Broker, pattern: str) -> None:
    arrived = asyncio.Event()

    async def on(_topic: str, _payload: bytes) -> None:
        arrived.set()

    mqtt = MqttConfig(host=broker.host, port=broker.port)
    async with Bus(mqtt, site="probe", service="probe-" + uuid.uuid4().hex[:6], announce=False) as bus:
        bus.subscribe_raw(pattern, on)
        await bus.subscribed(30)
        await arrived.wait()


@pytest.mark.parametrize("service", SERVICES)
async def test_service_loads_only_what_it_needs(service: str, tmp_path: Path, mosquitto: Broker) -> None:
    path, site = config(tmp_path, mosquitto)
    dump = tmp_path / "modules.json"
    log = tmp_path / f"{service}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PROBE, str(dump), f"services.{service}", "--config", str(path),
            cwd=REPO, stdout=out, stderr=out,
        )  # fmt: skip
        try:
            running = asyncio.create_task(first_message(mosquitto, topics.all_of(site, KIND[service])))
            ended = asyncio.create_task(process.wait())
            await asyncio.wait({running, ended}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
            ended.cancel()
            if not running.done():
                running.cancel()
                pytest.fail(f"{service} published nothing: " + log.read_text(errors="replace")[-3000:])
            running.result()
            process.send_signal(signal.SIGUSR1)
            for _ in range(600):
                if dump.exists() or process.returncode is not None:
                    break
                await asyncio.sleep(0.1)
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()
    assert dump.exists(), log.read_text(errors="replace")[-3000:]
    modules = set(json.loads(dump.read_text()))
    loaded = {name for name in HEAVY if name in modules}
    assert not loaded & NOT_LOADED[service], f"{service} loaded {sorted(loaded & NOT_LOADED[service])}"
    assert LOADED[service] <= loaded, f"{service} did not load {sorted(LOADED[service] - loaded)}"
    others = {m.split(".")[1] for m in modules if m.startswith("services.") and m.split(".")[1] != service}
    assert not others, f"{service} imported other services' packages: {sorted(others)}"
