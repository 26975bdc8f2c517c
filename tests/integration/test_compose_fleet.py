"""Every service in docker-compose.yml, started as a local process with the compose file's own
command, environment, mounts and healthcheck, against mosquitto with the project's conf, ACL and
bootstrap-generated users, comes online (its compose healthcheck passes).

Services whose package has no ``__main__`` yet are reported as skipped, not faked.
"""

from __future__ import annotations

import importlib.util
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli import COMMANDS
from tests.support.compose_local import LocalCompose, local_compose

ONLINE_TIMEOUT_S = 60.0


def _runnable(name: str, fleet: LocalCompose) -> bool:
    command = fleet.service(name)["command"]
    module = COMMANDS[command[1]][0]
    return importlib.util.find_spec(module.rsplit(".", 1)[0]) is not None and _has_main(module)


def _has_main(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCompose]:
    with local_compose(tmp_path_factory.mktemp("compose"), profiles=("demo",)) as running:
        # The simulator first, as in the demo: the bridges then find their devices at once.
        names = sorted(running.ours(), key=lambda n: n != "simulator")
        for name in names:
            if _runnable(name, running):
                running.start(name)
        yield running


EXPECTED = ["inverter-bridge", "bms-bridge", "meter-bridge", "dispatcher", "recorder", "simulator"]


def test_compose_runs_exactly_the_expected_services_from_our_image(fleet: LocalCompose) -> None:
    assert sorted(fleet.ours()) == sorted(EXPECTED)
    for name in EXPECTED:
        spec = fleet.service(name)
        assert spec["command"] == ["ongrid", name], name
        assert spec["environment"]["ONGRID_MQTT__USERNAME"] == name
        assert spec["environment"]["ONGRID_SERVICE"] == name


@pytest.mark.parametrize("name", EXPECTED)
def test_service_comes_online_and_passes_its_healthcheck(fleet: LocalCompose, name: str) -> None:
    if name not in fleet.processes:
        pytest.skip(f"{fleet.service(name)['command']} has no runnable module in services/ yet")
    deadline = time.monotonic() + ONLINE_TIMEOUT_S
    result = fleet.healthcheck(name)
    while result.returncode != 0 and time.monotonic() < deadline:
        process = fleet.processes[name]
        assert process.poll() is None, f"{name} exited with {process.returncode}:\n{fleet.log(name)}"
        time.sleep(0.5)
        result = fleet.healthcheck(name)
    assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}\n--- log ---\n{fleet.log(name)}"
    assert "healthy: " + name in result.stdout


def test_healthcheck_fails_for_a_service_that_never_ran(fleet: LocalCompose) -> None:
    _argv, env, _cwd = fleet.prepare("dispatcher")
    env["ONGRID_SERVICE"] = "never-started"
    result = subprocess.run(
        ["sh", "deploy/entrypoint.sh", "python", "-m", "shared.healthcheck"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "never-started: no availability retained" in result.stdout


def test_the_acl_denied_nothing_the_services_did(fleet: LocalCompose) -> None:
    """Everything the running services published or subscribed was allowed by deploy/mosquitto/acl."""
    log = fleet.broker_log()
    assert "Received PUBLISH" in log
    denied = [line for line in log.splitlines() if "Denied" in line]
    assert not denied, "\n".join(denied[:20])


def test_no_service_died(fleet: LocalCompose) -> None:
    dead = {name: p.returncode for name, p in fleet.processes.items() if p.poll() is not None}
    assert not dead, "\n".join(f"{name} exited {code}:\n{fleet.log(name)}" for name, code in dead.items())
