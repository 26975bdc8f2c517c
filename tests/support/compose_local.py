"""docker-compose.yml, run without a Docker engine: for the fleet and ACL tests.

The compose file is read as data and its services become local processes: the same command, the
compose environment after ``${VAR:-default}`` interpolation, container paths mapped to host paths
through the service's own mounts (named volumes become temporary folders, ``subpath`` included),
compose hostnames mapped to 127.0.0.1 and every port remapped to a free one. The broker is the real
mosquitto with the project's mosquitto.conf and ACL, and its users come from running the project's
bootstrap script, as the ``mqtt-init`` container would.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from tests.support import MOSQUITTO, free_port, stop_all, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
VENV_BIN = Path(sys.executable).parent
# The services built from our image, as opposed to mosquitto/influxdb/grafana/node-red.
OUR_IMAGE = "deploy/Dockerfile"

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class ComposeError(Exception):
    pass


ConfigEdit = Callable[[dict[str, Any]], dict[str, Any]]


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable syntax: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in ("-", ":-") and unset:
            return arg
        if op in ("?", ":?") and unset:
            raise ComposeError(f"variable {name} is required: {arg}")
        return value or ""

    return _VAR.sub(replace, text)


def _interpolate_tree(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [_interpolate_tree(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate_tree(v, env) for k, v in value.items()}
    return value


def load_compose(env: Mapping[str, str]) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return dict(_interpolate_tree(raw, env))


@dataclass
class Mounts:
    """Container path -> host path for one service, longest prefix first."""

    table: list[tuple[str, Path]] = field(default_factory=list)

    def host(self, container_path: str) -> Path:
        for prefix, host in sorted(self.table, key=lambda item: -len(item[0])):
            if container_path == prefix or container_path.startswith(prefix.rstrip("/") + "/"):
                rest = container_path[len(prefix) :].lstrip("/")
                return host / rest if rest else host
        raise ComposeError(f"container path {container_path} is not on any mount")

    def maps(self, container_path: str) -> bool:
        try:
            self.host(container_path)
        except ComposeError:
            return False
        return True


@dataclass
class LocalCompose:
    """One emulated deployment: its folders, port map and processes."""

    workdir: Path
    env: dict[str, str]
    profiles: tuple[str, ...] = ()
    doc: dict[str, Any] = field(init=False)
    ports: dict[int, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.doc = load_compose(self.env)
        self.workdir.chmod(0o711)

    # -- mapping --------------------------------------------------------------------------------

    @property
    def service_names(self) -> set[str]:
        return set(self.doc["services"])

    def service(self, name: str) -> dict[str, Any]:
        return dict(self.doc["services"][name])

    def enabled(self, name: str) -> bool:
        wanted = self.service(name).get("profiles")
        return not wanted or bool(set(wanted) & set(self.profiles))

    def ours(self) -> list[str]:
        return [
            name
            for name, spec in self.doc["services"].items()
            if (spec.get("build") or {}).get("dockerfile") == OUR_IMAGE and self.enabled(name)
        ]

    def port(self, port: int) -> int:
        if port not in self.ports:
            self.ports[port] = free_port()
        return self.ports[port]

    def volume_dir(self, volume: str) -> Path:
        if volume not in (self.doc.get("volumes") or {}):
            raise ComposeError(f"named volume {volume!r} is not declared under volumes:")
        path = self.workdir / "volumes" / volume
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o711)
        return path

    def mounts(self, name: str) -> Mounts:
        table = Mounts()
        for entry in self.service(name).get("volumes", []):
            if isinstance(entry, str):
                source, target = entry.split(":")[:2]
                kind = "bind" if source.startswith((".", "/")) else "volume"
                subpath = None
            else:
                source, target, kind = entry["source"], entry["target"], entry["type"]
                subpath = (entry.get("volume") or {}).get("subpath")
            if kind == "bind":
                host = (ROOT / source).resolve()
            else:
                host = self.volume_dir(source)
                if subpath:
                    host = host / subpath
            table.table.append((target, host))
        return table

    def map_host(self, host: str) -> str:
        return "127.0.0.1" if host in self.service_names or host == "0.0.0.0" else host

    def map_value(self, value: str, mounts: Mounts) -> str:
        """An environment value: container paths, compose hostnames and ports in URLs."""
        if value.startswith("/") and mounts.maps(value):
            return str(mounts.host(value))
        if "://" in value:
            parts = urlsplit(value)
            if parts.hostname and parts.hostname in self.service_names:
                netloc = f"127.0.0.1:{self.port(parts.port or 80)}"
                return urlunsplit(parts._replace(netloc=netloc))
        return value

    def map_config(self, data: Any, mounts: Mounts) -> Any:
        """The YAML config a service reads: hosts, ports and container paths rewritten."""
        if isinstance(data, list):
            return [self.map_config(item, mounts) for item in data]
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key == "host" and isinstance(value, str):
                out[key] = self.map_host(value)
            elif key == "port" and isinstance(value, int):
                out[key] = self.port(value)
            elif isinstance(value, str) and value.startswith("/") and mounts.maps(value):
                out[key] = str(mounts.host(value))
            else:
                out[key] = self.map_config(value, mounts)
        return out

    def environment(self, name: str, mounts: Mounts) -> dict[str, str]:
        env = {
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.workdir),
            "PYTHONUNBUFFERED": "1",
        }
        for key, value in (self.service(name).get("environment") or {}).items():
            value = str(value)
            if key.endswith("__HOST") or key in ("MQTT_HOST",):
                value = self.map_host(value)
            elif key.endswith("__PORT") or key == "MQTT_PORT":
                value = str(self.port(int(value)))
            else:
                value = self.map_value(value, mounts)
            env[key] = value
        return env

    # -- the broker -----------------------------------------------------------------------------

    def bootstrap(self) -> subprocess.CompletedProcess[str]:
        """Run mqtt-init's command as the compose file says, with its mounts mapped."""
        spec = self.service("mqtt-init")
        mounts = self.mounts("mqtt-init")
        argv = [self.map_value(part, mounts) for part in spec["entrypoint"]]
        argv[0] = shutil.which(Path(argv[0]).name) or argv[0]
        env = self.environment("mqtt-init", mounts)
        # Every process here runs as the test's user, not the images' uids.
        env["BROKER_UID"] = "0"
        env["SERVICE_UID"] = "0"
        env["NODERED_UID"] = "0"
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=True, timeout=60)

    def broker_conf(self) -> Path:
        mounts = self.mounts("mosquitto")
        text = mounts.host("/mosquitto/config/mosquitto.conf").read_text()
        lines = []
        for line in text.splitlines():
            words = line.split()
            if words and words[0] == "listener":
                port = int(words[1])
                line = f"listener {self.port(port)} 127.0.0.1"
            elif words and words[0] == "log_dest":
                line = f"log_dest file {self.workdir / 'mosquitto.log'}"
            elif len(words) == 2 and words[1].startswith("/"):
                line = f"{words[0]} {mounts.host(words[1])}"
            lines.append(line)
        # Debug lines carry the denied publishes the ACL test looks for. The container's broker has
        # its own uid; here it keeps the test's, so it can reach the test's private folders.
        lines.append("log_type debug")
        if os.geteuid() == 0:
            lines.append("user root")
        mounts.host("/mosquitto/data").mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    @property
    def broker_port(self) -> int:
        return self.port(1883)

    def start_broker(self) -> None:
        self.bootstrap()
        conf = self.broker_conf()
        log = self.workdir / "mosquitto.stderr"
        self.logs["mosquitto"] = log
        with log.open("wb") as sink:
            self.processes["mosquitto"] = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=sink, stdout=sink)
        wait_for_port("127.0.0.1", self.broker_port)

    def password(self, user: str) -> str:
        return (self.volume_dir("mqtt-auth") / "secrets" / user / "password").read_text().strip()

    def broker_log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- our services ---------------------------------------------------------------------------

    def prepare(self, name: str, edit: ConfigEdit | None = None) -> tuple[list[str], dict[str, str], Path]:
        """argv (entrypoint + command), environment and working folder of one service; ``edit``
        changes its config as a person would edit ongrid.yaml before a restart."""
        spec = self.service(name)
        mounts = self.mounts(name)
        env = self.environment(name, mounts)
        config = mounts.host(self.doc["x-ongrid-env"]["ONGRID_CONFIG"])
        cwd = self.workdir / "run" / name
        cwd.mkdir(parents=True, exist_ok=True)
        mapped = cwd / "ongrid.yaml"
        data = self.map_config(yaml.safe_load(config.read_text()), mounts)
        mapped.write_text(yaml.safe_dump(edit(data) if edit else data))
        env["ONGRID_CONFIG"] = str(mapped)
        for target, host in mounts.table:
            if target.startswith("/app/"):
                host.mkdir(parents=True, exist_ok=True)
        argv = ["sh", str(ROOT / "deploy/entrypoint.sh"), *spec["command"]]
        return argv, env, cwd

    def start(self, name: str, edit: ConfigEdit | None = None) -> None:
        argv, env, cwd = self.prepare(name, edit)
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        with log.open("wb") as sink:
            self.processes[name] = subprocess.Popen(argv, env=env, cwd=cwd, stdout=sink, stderr=sink)

    def healthcheck(self, name: str) -> subprocess.CompletedProcess[str]:
        """The service's compose healthcheck command, run as Docker would (in its environment)."""
        _argv, env, cwd = self.prepare(name)
        test = self.service(name)["healthcheck"]["test"]
        assert test[0] == "CMD", test
        command = ["sh", str(ROOT / "deploy/entrypoint.sh"), *test[2:]] if test[1] == "ongrid-entrypoint" else test[1:]
        return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=30)

    def log(self, name: str) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace")[-4000:] if path and path.exists() else ""

    def stop(self) -> None:
        stop_all(reversed(list(self.processes.values())), grace_s=10)


TEST_SECRETS = {
    "INFLUXDB_ADMIN_PASSWORD": "test-admin",
    "INFLUXDB_WRITE_PASSWORD": "test-write",
    "INFLUXDB_READ_PASSWORD": "test-read",
    "GRAFANA_ADMIN_PASSWORD": "test-grafana",
}


@contextlib.contextmanager
def local_compose(workdir: Path, profiles: tuple[str, ...] = ()) -> Iterator[LocalCompose]:
    if not Path(MOSQUITTO).exists():
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    fleet = LocalCompose(workdir, dict(TEST_SECRETS), profiles)
    try:
        fleet.start_broker()
        yield fleet
    finally:
        fleet.stop()
