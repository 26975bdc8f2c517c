"""docker-compose.yml run for real by a compose provider: ``podman-compose up`` (from PyPI) with the
demo profile, for every service whose image can be had here.

What this machine cannot do is changed by a generated override file, and only that (each item is
named in docs/deployment.md):

- eclipse-mosquitto (mqtt-init, mosquitto) needs a registry: the same services run the broker image
  built from Debian's mosquitto (tests/image/mosquitto.Containerfile), with the compose file's own
  command, mounts and healthcheck;
- influxdb, grafana and node-red need a registry: not started; the recorder writes its embedded
  store (its InfluxDB settings are left out) and does not wait for influxdb;
- podman 4.3 has no volume ``subpath``: the ``mqtt-auth`` volume is a host folder and each
  service binds the same sub-folder compose mounts (``secrets/<user>``), read-only as in compose;
- podman without systemd runs no healthcheck timers: the test runs ``podman healthcheck run`` on
  the project's containers every few seconds, as the timer would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared import topics
from tests.image.podman_fleet import BROKER_IMAGE, IMAGE, ROOT, SERVICES, SITE, Messages, engine_env, podman
from tests.support import free_port
from tests.support.compose_local import TEST_SECRETS, load_compose

# The first test's setup may build the base, the image and the broker image (about 10 minutes from
# nothing on 2 busy cores): more than the suite's default per-test timeout.
pytestmark = pytest.mark.timeout(1800)

PODMAN_COMPOSE = "podman-compose==1.6.0"
TIMEOUT_S = 180.0


def _podman_compose(cache: Path) -> Path:
    """podman-compose in a venv of its own (var/, reused across runs), never in the project's."""
    venv = cache / "podman-compose"
    binary = venv / "bin" / "podman-compose"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        pip = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", PODMAN_COMPOSE], capture_output=True, text=True, timeout=600
        )
        if pip.returncode != 0:
            pytest.skip(f"cannot install {PODMAN_COMPOSE} from PyPI: {pip.stderr.strip()[-300:]}")
    return binary


def _bind(auth: Path, subpath: str | None, target: str, read_only: bool) -> str:
    host = auth / subpath if subpath else auth
    return f"{host}:{target}{':ro' if read_only else ''}"


def override(auth: Path) -> str:
    """The override file's text: only what podman 4.3 without a registry needs changed."""
    doc = load_compose(TEST_SECRETS)
    lines = ["services:"]
    for name, spec in doc["services"].items():
        volumes = []
        changed = False
        for entry in spec.get("volumes", []):
            if isinstance(entry, str):
                source, target, *mode = entry.split(":")
                if source == "mqtt-auth":
                    entry, changed = _bind(auth, None, target, mode == ["ro"]), True
                elif source.startswith("./"):
                    entry = f"{(ROOT / source).resolve()}:{target}{':' + mode[0] if mode else ''}"
                volumes.append(entry)
            elif entry["source"] == "mqtt-auth":
                subpath = (entry.get("volume") or {}).get("subpath")
                volumes.append(_bind(auth, subpath, entry["target"], bool(entry.get("read_only"))))
                changed = True
            elif entry["type"] == "bind":
                ro = ":ro" if entry.get("read_only") else ""
                volumes.append(f"{(ROOT / entry['source']).resolve()}:{entry['target']}{ro}")
            else:
                volumes.append(f"{entry['source']}:{entry['target']}")
        body = []
        if spec.get("image", "").startswith("eclipse-mosquitto"):
            body.append(f"    image: {BROKER_IMAGE}")
        if changed:
            body.append(f"    volumes: !override {json.dumps(volumes)}")
        if name == "recorder":
            body.append("    depends_on: !reset {}")
        if body:
            lines += [f"  {name}:", *body]
    return "\n".join(lines) + "\n"


class HealthTimer:
    """What podman's systemd timer would do: run each container's healthcheck every few seconds."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(3.0):
            listing = podman("ps", "--filter", f"label=io.podman.compose.project={self.project}", "--format",
                             "{{.Names}}", check=False)  # fmt: skip
            for name in listing.stdout.split():
                podman("healthcheck", "run", name, check=False, timeout=60)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(90)


def containers(project: str) -> dict[str, dict[str, Any]]:
    """compose service -> podman's view of its container."""
    listing = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={project}", "--format", "json")
    return {c["Labels"]["com.docker.compose.service"]: c for c in json.loads(listing.stdout or "[]")}


def _volumes(container: str) -> list[str]:
    inspect = json.loads(podman("inspect", container, check=False).stdout or "[{}]")[0]
    return [m["Name"] for m in inspect.get("Mounts", []) if m.get("Type") == "volume"]


@pytest.fixture(scope="module")
def compose(built: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    binary = _podman_compose(ROOT / "var")
    workdir = tmp_path_factory.mktemp("compose-up")
    auth = workdir / "mqtt-auth"
    auth.mkdir(mode=0o711)
    (workdir / "override.yaml").write_text(override(auth))
    project = f"ongridtest{uuid.uuid4().hex[:8]}"
    env = {
        **engine_env(),
        **TEST_SECRETS,
        "MQTT_PORT": str(free_port()),
        "SIMULATOR_CONTROL_PORT": str(free_port()),
        "ONGRID_IMAGE": IMAGE,
    }
    base = [str(binary), "-p", project, "-f", str(ROOT / "docker-compose.yml"), "-f", str(workdir / "override.yaml")]
    base += ["--profile", "demo"]
    timer = None
    try:
        up = subprocess.run(
            [*base, "up", "-d", "--no-build", "mqtt-init", "mosquitto", *SERVICES],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        # After `up`: podman 4.3 does not wait for health anyway, and checks racing the container
        # creation only slow it down.
        timer = HealthTimer(project)
        yield {"project": project, "env": env, "auth": auth, "up": up}
    finally:
        if timer is not None:
            timer.close()
        # `down -v` removes the named volumes, not the anonymous ones of the image's VOLUME.
        anonymous = [name for c in containers(project).values() for name in _volumes(c["Id"]) if project not in name]
        subprocess.run([*base, "down", "-v", "-t", "5"], env=env, cwd=ROOT, capture_output=True, timeout=300)
        for volume in anonymous:
            podman("volume", "rm", "--force", volume, check=False)
        subprocess.run(["rm", "-rf", str(auth)], check=False)


def test_compose_up_starts_the_services_with_compose_names_and_policies(compose: dict[str, Any]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while (running := containers(compose["project"]))["mqtt-init"]["State"] != "exited":
        assert time.monotonic() < deadline, running["mqtt-init"]
        time.sleep(1)
    assert set(running) == {"mqtt-init", "mosquitto", *SERVICES}, sorted(running)
    assert running["mqtt-init"]["ExitCode"] == 0, running["mqtt-init"]
    for name in ("mosquitto", *SERVICES):
        assert running[name]["State"] == "running", (name, running[name]["State"])
    doc = load_compose(TEST_SECRETS)
    for name in SERVICES:
        inspect = json.loads(podman("inspect", running[name]["Names"][0]).stdout)[0]
        assert inspect["Config"]["User"] == "10001:10001", name
        assert inspect["HostConfig"]["RestartPolicy"]["Name"] == doc["services"][name]["restart"], name
        mounted = {m["Destination"]: m["Source"] for m in inspect["Mounts"]}
        # Only its own password folder, as compose's subpath mounts it.
        assert mounted["/run/secrets/mqtt"] == str(compose["auth"] / "secrets" / name), name


def test_every_compose_service_becomes_healthy(compose: dict[str, Any]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        running = containers(compose["project"])
        health = {name: running[name].get("Status", "") for name in ("mosquitto", *SERVICES)}
        if all("(healthy)" in status for status in health.values()):
            return
        assert time.monotonic() < deadline, f"not all healthy after {TIMEOUT_S} s: {health}"
        time.sleep(3)


def test_states_flow_through_the_compose_broker(compose: dict[str, Any]) -> None:
    password = (compose["auth"] / "secrets" / "homeassistant" / "password").read_text().strip()
    client = Messages(int(compose["env"]["MQTT_PORT"]), "homeassistant", password, topics.everything(SITE))
    try:
        for topic in (topics.inverter_state(SITE, "inv1"), topics.meter_state(SITE, "grid"),
                      topics.battery_state(SITE, "bat1"), topics.dispatcher_decision(SITE)):  # fmt: skip
            assert client.wait_for(topic, lambda _p: True, TIMEOUT_S), f"no {topic}"
    finally:
        client.close()


def test_the_override_changes_only_what_this_machine_cannot_do() -> None:
    text = override(Path("/auth"))
    doc = yaml.load(text, Loader=_TagLoader)
    assert set(doc["services"]) <= {"mqtt-init", "mosquitto", *SERVICES, "node-red"}
    for name, spec in doc["services"].items():
        assert set(spec) <= {"image", "volumes", "depends_on"}, name
    assert os.path.basename(doc["services"]["mosquitto"]["image"]).startswith("ongrid-test-mosquitto")
    assert "/auth/secrets/recorder:/run/secrets/mqtt:ro" in doc["services"]["recorder"]["volumes"]


class _TagLoader(yaml.SafeLoader):
    """Reads compose's !override and !reset tags as plain data."""


def _construct_override(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node)


_TagLoader.add_constructor("!override", _construct_override)
_TagLoader.add_constructor("!reset", lambda _loader, _node: None)
