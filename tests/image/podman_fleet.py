"""The ongrid image run for real under podman, service by service as docker-compose.yml defines them.

Each ongrid service of the compose file becomes ``podman run`` of the built image with the compose
service's command, environment, ``init``, ``group_add`` and mounts, on a podman network where the
compose service names resolve (``--network-alias``), so ``mosquitto`` and ``simulator`` in
``deploy/compose/demo-house.yaml`` are reached as in compose. Two things differ, both because podman
4.3 (Debian bookworm) and this machine cannot do them, and both named in docs/deployment.md:

- the ``mqtt-auth`` named volume is a host folder, because podman 4.3 has no volume ``subpath``;
  each container still mounts only ``secrets/<its user>``, read-only, at the compose target;
- the broker is Debian's mosquitto in an image built here on the same base
  (tests/image/mosquitto.Containerfile), because eclipse-mosquitto needs a registry; it runs the
  project's mosquitto.conf, acl and bootstrap.sh unchanged, as mqtt-init and mosquitto do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from tests.support.compose_local import TEST_SECRETS, load_compose

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
IMAGE = os.environ.get("ONGRID_IMAGE", "ongrid:latest")
BROKER_IMAGE = "localhost/ongrid-test-mosquitto:latest"
SITE = "seed"  # deploy/compose/demo-house.yaml
# The simulator first, as in compose's demo profile: the bridges then find their devices at once.
SERVICES = ("simulator", "inverter-bridge", "meter-bridge", "bms-bridge", "dispatcher", "recorder")
BASE_LABEL = "org.opencontainers.image.base.name"


def engine_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF))}


def podman(*args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], env=engine_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def why_no_podman() -> str | None:
    """None when podman works here, else the reason (the tests skip with it)."""
    if shutil.which("podman") is None:
        return "podman is not installed (make test-image installs it as root: apt-get install -y podman runc)"
    info = podman("info", check=False, timeout=60)
    if info.returncode != 0:
        return f"podman is installed but 'podman info' fails: {(info.stderr or info.stdout).strip()[-300:]}"
    return None


def build_image(log: Path) -> None:
    """``make image``'s script: a no-op when nothing changed (layer cache)."""
    with log.open("w") as sink:
        result = subprocess.run(
            [str(ROOT / "deploy" / "build-image.sh")],
            env={**engine_env(), "IMAGE": IMAGE},
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=1800,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"deploy/build-image.sh exited {result.returncode}:\n{log.read_text()[-3000:]}")


def base_of(image: str) -> str:
    return podman("image", "inspect", "--format", "{{index .Labels \"" + BASE_LABEL + "\"}}", image).stdout.strip()


def build_broker_image(base: str, log: Path) -> None:
    result = podman(
        "build",
        "--format",
        "docker",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-f",
        str(ROOT / "tests" / "image" / "mosquitto.Containerfile"),
        "-t",
        BROKER_IMAGE,
        str(ROOT / "tests" / "image"),
        check=False,
        timeout=900,
    )
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"building {BROKER_IMAGE} failed:\n{log.read_text()[-3000:]}")


class Messages:
    """A host-side MQTT client (as Home Assistant would connect) that keeps every message it sees."""

    def __init__(self, port: int, username: str, password: str, topic: str) -> None:
        self.seen: list[tuple[float, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"image-test-{uuid.uuid4().hex[:8]}")
        self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, _u, _f, rc, _p: (c.subscribe(topic, qos=1), self._connected.set())
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._connected.wait(30):
            raise RuntimeError(f"no MQTT connection to the broker container on 127.0.0.1:{port}")

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            payload = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(payload, dict):
            with self._lock:
                self.seen.append((time.monotonic(), message.topic, payload))

    def since(self, start: float, topic: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [p for t, name, p in self.seen if t >= start and (topic is None or name == topic)]

    def wait_for(
        self, topic: str, check: Callable[[dict[str, Any]], bool], timeout: float, start: float = 0.0
    ) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for payload in self.since(start, topic):
                if check(payload):
                    return payload
            time.sleep(0.5)
        return None

    def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        self.client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(30)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Fleet:
    """One test deployment: its network, volumes, containers and the host folder for mqtt-auth."""

    workdir: Path
    prefix: str = field(default_factory=lambda: f"ongrid-test-{uuid.uuid4().hex[:8]}")
    doc: dict[str, Any] = field(default_factory=lambda: load_compose(TEST_SECRETS))
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    broker_port: int = 0
    network: str = ""
    started_at: float = 0.0  # monotonic time the first ongrid container was started

    def __post_init__(self) -> None:
        self.network = self.prefix
        podman("network", "create", self.network)

    @property
    def auth_dir(self) -> Path:
        return self.workdir / "mqtt-auth"

    def name(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    def service(self, name: str) -> dict[str, Any]:
        return dict(self.doc["services"][name])

    # -- compose -> podman ------------------------------------------------------------------------

    def volume(self, source: str) -> str:
        if source not in (self.doc.get("volumes") or {}):
            raise ValueError(f"named volume {source!r} is not declared in docker-compose.yml")
        name = f"{self.prefix}-{source}"
        if name not in self.volumes:
            podman("volume", "create", name)
            self.volumes.append(name)
        return name

    def mount_args(self, name: str, config: Path | None = None) -> list[str]:
        """The service's compose volumes; ``config`` in place of its /config/ongrid.yaml source."""
        args: list[str] = []
        for entry in self.service(name).get("volumes", []):
            if isinstance(entry, str):
                source, target, *mode = entry.split(":")
                read_only = mode == ["ro"]
                kind = "bind" if source.startswith((".", "/")) else "volume"
                subpath = None
            else:
                source, target, kind = entry["source"], entry["target"], entry["type"]
                read_only = bool(entry.get("read_only"))
                subpath = (entry.get("volume") or {}).get("subpath")
            ro = ",ro=true" if read_only else ""
            if config is not None and target == "/config/ongrid.yaml":
                args += ["--mount", f"type=bind,src={config},dst={target}{ro}"]
            elif kind == "bind":
                args += ["--mount", f"type=bind,src={(ROOT / source).resolve()},dst={target}{ro}"]
            elif source == "mqtt-auth":
                host = self.auth_dir / subpath if subpath else self.auth_dir
                args += ["--mount", f"type=bind,src={host},dst={target}{ro}"]
            else:
                args += ["--mount", f"type=volume,src={self.volume(source)},dst={target}{ro}"]
        return args

    def environment(self, name: str, drop: Sequence[str] = ()) -> dict[str, str]:
        env = {k: str(v) for k, v in (self.service(name).get("environment") or {}).items()}
        return {k: v for k, v in env.items() if not k.startswith(tuple(drop))}

    def run(
        self,
        name: str,
        image: str,
        command: Sequence[str],
        env: Mapping[str, str],
        extra: Sequence[str] = (),
        container: str | None = None,
        config: Path | None = None,
    ) -> str:
        spec = self.service(name)
        cname = container or self.name(name)
        args = ["run", "-d", "--name", cname, "--network", self.network, "--network-alias", name]
        if spec.get("init"):
            args.append("--init")
        for group in spec.get("group_add", []):
            args += ["--group-add", str(group)]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        args += [*self.mount_args(name, config), *extra, image, *command]
        podman(*args)
        self.containers.append(cname)
        return cname

    # -- the broker (mqtt-init, then mosquitto) ---------------------------------------------------

    def start_broker(self, port: int) -> None:
        self.auth_dir.mkdir(mode=0o711)
        init = self.service("mqtt-init")
        result = podman(
            "run", "--rm", "--user", init["user"], "--entrypoint", init["entrypoint"][0],
            *[arg for key, value in init["environment"].items() for arg in ("-e", f"{key}={value}")],
            *self.mount_args("mqtt-init"), BROKER_IMAGE, *init["entrypoint"][1:],
            timeout=120,
        )  # fmt: skip
        assert "created users" in result.stdout, result.stdout + result.stderr
        self.broker_port = port
        self.run("mosquitto", BROKER_IMAGE, [], {}, extra=["-p", f"127.0.0.1:{port}:1883"])
        test = self.service("mosquitto")["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL", test
        deadline = time.monotonic() + 60
        while True:
            check = podman("exec", self.name("mosquitto"), "sh", "-c", test[1], check=False, timeout=30)
            if check.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto never passed its compose healthcheck:\n{self.logs('mosquitto')}")
            time.sleep(1)

    def password(self, user: str) -> str:
        return (self.auth_dir / "secrets" / user / "password").read_text().strip()

    # -- ongrid services ----------------------------------------------------------------------------

    def start_service(
        self,
        name: str,
        drop_env: Sequence[str] = (),
        *,
        container: str | None = None,
        config: Path | None = None,
        extra: Sequence[str] = (),
    ) -> str:
        spec = self.service(name)
        env = self.environment(name, drop_env)
        extra = ["--stop-timeout", "15", *extra]
        return self.run(name, IMAGE, spec["command"], env, extra=extra, container=container, config=config)

    def exec(self, name: str, *argv: str, timeout: float = 120.0, env: Mapping[str, str] | None = None) -> Any:
        extra = [arg for key, value in (env or {}).items() for arg in ("-e", f"{key}={value}")]
        return podman("exec", *extra, self.name(name), *argv, check=False, timeout=timeout)

    def logs(self, name: str) -> str:
        result = podman("logs", "--tail", "60", self.name(name), check=False)
        return (result.stdout + result.stderr)[-5000:]

    def running(self, name: str) -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", self.name(name), check=False)
        return state.stdout.strip() == "true"

    def close(self) -> None:
        for cname in reversed(self.containers):
            podman("rm", "--force", "--volumes", "--time", "5", cname, check=False, timeout=60)
        for volume in self.volumes:
            podman("volume", "rm", "--force", volume, check=False)
        podman("network", "rm", "--force", self.network, check=False)
        # The bootstrap made these as other uids with mode 0400/0500: remove as root can.
        shutil.rmtree(self.auth_dir, ignore_errors=True)
