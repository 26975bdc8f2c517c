"""The example Node-RED flow (deploy/node-red) running in real Node-RED 4.x, headless with the
project's settings file, against mosquitto with the project's conf, ACL and the ``nodered`` user:
it shows battery SoC and power from published state in its debug output, and an inject button
asks the dispatcher for a mode on the mode-set topic.

Node-RED is installed from npm once into var/cache (skipped with the reason when npm or the
registry is out of reach).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from shared import topics
from shared.messages import BatteryLimits, BatteryState, DispatcherModeName, ModeRequest, utc_now
from tests.support import free_port, stop_process, wait_for_port
from tests.support.compose_local import ROOT, LocalCompose, local_compose

NODE_RED_VERSION = "4.1.8"  # 5.x needs Node.js 22.9+
CACHE = ROOT / "var" / "cache" / f"node-red-{NODE_RED_VERSION}"
RED_JS = CACHE / "node_modules" / "node-red" / "red.js"
SITE = f"nr{uuid.uuid4().hex[:6]}"


def _install() -> Path:
    if RED_JS.exists():
        return RED_JS
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node/npm not installed (apt-get install nodejs npm)")
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(CACHE),
                "--no-audit",
                "--no-fund",
                "--omit=dev",
                "--loglevel=error",
                f"node-red@{NODE_RED_VERSION}",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"npm could not install node-red@{NODE_RED_VERSION}: {getattr(exc, 'stderr', exc)}")
    return RED_JS


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCompose]:
    with local_compose(tmp_path_factory.mktemp("nr-broker")) as running:
        yield running


class NodeRed:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process, self.port, self.log_path = process, port, log

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            assert self.process.poll() is None, f"node-red exited {self.process.returncode}:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {text!r} from node-red in {timeout_s} s:\n{self.log()}"
            time.sleep(0.2)

    def inject(self, node_id: str) -> int:
        """What the editor's inject button does: the admin API's /inject/<id>."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/inject/{node_id}", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)


@pytest.fixture(scope="module")
def node_red(broker: LocalCompose, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeRed]:
    red = _install()
    user_dir = tmp_path_factory.mktemp("node-red")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(user_dir),
        "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(broker.broker_port),
        "MQTT_USER": "nodered",
        "MQTT_PASSWORD_FILE": str(broker.volume_dir("mqtt-auth") / "secrets" / "nodered" / "password"),
        "ONGRID_SITE": SITE,
        "NODE_RED_PORT": str(port),
        "NODE_RED_HOST": "127.0.0.1",
        "NODE_RED_ENABLE_EDITOR": "false",
        "NODE_RED_FLOW_FILE": str(user_dir / "flows.json"),
    }
    log = user_dir / "node-red.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            ["node", str(red), "--settings", str(ROOT / "deploy/node-red/settings.js"), "--userDir", str(user_dir)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    running = NodeRed(process, port, log)
    try:
        wait_for_port("127.0.0.1", port, timeout=60)
        running.wait_for("Started flows")
        running.wait_for("Connected to broker")
        yield running
    finally:
        stop_process(process, grace_s=10)


def _client(broker: LocalCompose, user: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        broker.broker_port,
        username=user,
        password=broker.password(user),
        identifier=f"{user}-{uuid.uuid4().hex[:6]}",
        protocol=aiomqtt.ProtocolVersion.V5,
    )


def test_headless_settings_keep_the_editor_off(node_red: NodeRed) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{node_red.port}/", timeout=10)
    assert info.value.code == 404
    assert "Settings file  : " + str(ROOT / "deploy/node-red/settings.js") in node_red.log()


async def test_flow_shows_soc_and_power_from_battery_state(broker: LocalCompose, node_red: NodeRed) -> None:
    state = BatteryState(
        ts=utc_now(),
        device="bat1",
        voltage_v=51.3,
        current_a=-12.5,
        power_w=-641.25,
        soc_pct=63.7,
        limits=BatteryLimits(charge_current_a=50, discharge_current_a=50),
    )
    async with _client(broker, "bms-bridge") as bms:
        await bms.publish(topics.battery_state(SITE, "bat1"), state.to_json(), qos=1, retain=True)
    await asyncio.to_thread(node_red.wait_for, "soc_pct: 63.7", 30)
    log = node_red.log()
    shown = log[log.rindex("[debug:ongrid battery]") :]
    assert "soc_pct: 63.7" in shown and "battery_power_w: -641.25" in shown and "device: 'bat1'" in shown, shown


@pytest.mark.parametrize(("node_id", "mode"), [("mode-hold", "hold"), ("mode-force-charge", "force_charge")])
async def test_inject_asks_the_dispatcher_for_a_mode(
    broker: LocalCompose, node_red: NodeRed, node_id: str, mode: str
) -> None:
    async with _client(broker, "dispatcher") as dispatcher:
        await dispatcher.subscribe(topics.mode_set(SITE), qos=1)
        assert await asyncio.to_thread(node_red.inject, node_id) == 200
        async with asyncio.timeout(15):
            message = await anext(aiter(dispatcher.messages))
    request = ModeRequest.model_validate_json(bytes(message.payload))  # type: ignore[arg-type]
    assert str(message.topic) == topics.mode_set(SITE)
    assert request.mode is DispatcherModeName(mode)
    assert json.loads(bytes(message.payload))["mode"] == mode  # type: ignore[arg-type]
