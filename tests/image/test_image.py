"""The built image, run for real: the fleet of docker-compose.yml (demo profile, recorder on its
embedded store) in containers under podman, against mosquitto with the project's conf, ACL and
bootstrap-generated passwords, each container mounting only its own password.

Checks against the simulated house's own ground truth (the simulator's SimTruth), the broker as
Home Assistant sees it, and the image's own HEALTHCHECK as podman runs it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared import topics
from tests.image.podman_fleet import IMAGE, ROOT, SERVICES, SITE, Fleet, Messages, podman

# The first test's setup may build the base, the image and the broker image (about 10 minutes from
# nothing on 2 busy cores): more than the suite's default per-test timeout.
pytestmark = pytest.mark.timeout(1800)

HEALTHY_TIMEOUT_S = 180.0
STATE_TIMEOUT_S = 120.0


def _ts_ms(payload: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(payload["ts"].replace("Z", "+00:00")).timestamp() * 1000)


def _wait_healthy(fleet: Fleet, name: str) -> float:
    """``podman healthcheck run`` (the image's HEALTHCHECK) until healthy; seconds since the fleet started."""
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    while True:
        result = podman("healthcheck", "run", fleet.name(name), check=False, timeout=60)
        if result.returncode == 0:
            return time.monotonic() - fleet.started_at
        assert fleet.running(name), f"{name} exited:\n{fleet.logs(name)}"
        assert time.monotonic() < deadline, f"{name} not healthy: {result.stdout}{result.stderr}\n{fleet.logs(name)}"
        time.sleep(1)


def test_image_runs_as_the_non_root_user(fleet: Fleet) -> None:
    assert podman("image", "inspect", "--format", "{{.Config.User}}", IMAGE).stdout.strip() == "10001:10001"
    # Every process of the recorder container, the service included, runs as uid 10001.
    probe = (
        "import os\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    uid = next(l.split()[1] for l in open(f'/proc/{pid}/status') if l.startswith('Uid:'))\n"
        "    print(uid, ' '.join(open(f'/proc/{pid}/cmdline').read().replace(chr(0), ' ').split()))\n"
    )
    result = fleet.exec("recorder", "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    lines = [line.split(" ", 1) for line in result.stdout.splitlines() if line.strip()]
    assert any("ongrid recorder" in cmd for _uid, cmd in lines), result.stdout
    assert {uid for uid, _cmd in lines} == {"10001"}, result.stdout


def test_every_service_passes_the_image_healthcheck(fleet: Fleet) -> None:
    image_test = json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", IMAGE).stdout)
    for name in SERVICES:
        # The compose file's healthcheck is the image's own, so what is checked here is what compose runs.
        assert fleet.service(name)["healthcheck"]["test"] == image_test, name
    times = {name: round(_wait_healthy(fleet, name), 1) for name in SERVICES}
    for name in SERVICES:
        status = podman("inspect", "--format", "{{.State.Health.Status}}", fleet.name(name)).stdout.strip()
        assert status == "healthy", (name, status)
    print(f"\nseconds from the first `podman run` to healthy: {json.dumps(times)}")


def test_the_healthcheck_fails_for_a_service_that_is_not_online(fleet: Fleet) -> None:
    result = fleet.exec(
        "dispatcher", "ongrid-entrypoint", "python", "-m", "shared.healthcheck", env={"ONGRID_SERVICE": "never-started"}
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "never-started: no availability retained" in result.stdout


def test_states_flow_from_every_bridge(fleet: Fleet, bus: Messages) -> None:
    wanted = {
        topics.inverter_state(SITE, "inv1"): "battery_soc_pct",
        topics.meter_state(SITE, "grid"): "power_w",
        topics.meter_state(SITE, "pv"): "power_w",
        topics.battery_state(SITE, "bat1"): "soc_pct",
    }
    for topic, field_name in wanted.items():
        payload = bus.wait_for(topic, lambda p, f=field_name: f in p, STATE_TIMEOUT_S)
        assert payload is not None, f"no {topic} within {STATE_TIMEOUT_S} s"
    # Flowing, not one retained message: the inverter's readings keep coming with new times.
    inverter = topics.inverter_state(SITE, "inv1")
    deadline = time.monotonic() + STATE_TIMEOUT_S
    while len({p["ts"] for p in bus.since(0.0, inverter)}) < 3:
        assert time.monotonic() < deadline, "inverter state stopped flowing"
        time.sleep(1)


def test_a_mode_set_reaches_the_simulated_inverter(fleet: Fleet, bus: Messages) -> None:
    truth = topics.simulator_truth(SITE)
    assert bus.wait_for(truth, lambda p: "battery_w" in p, STATE_TIMEOUT_S), "no simulator truth"
    _wait_healthy(fleet, "dispatcher")
    _wait_healthy(fleet, "inverter-bridge")
    asked_w = 1500.0
    start = time.monotonic()
    # As Home Assistant would: the dispatcher turns it into an inverter command, the bridge writes
    # the simulated inverter's registers over Modbus TCP, and the simulated battery moves.
    bus.publish(topics.mode_set(SITE), {"mode": "force_discharge", "power_w": asked_w})
    try:
        ack = bus.wait_for(
            topics.inverter_ack(SITE, "inv1"),
            lambda p: p.get("applied_mode") == "discharge" and (p.get("applied_power_w") or 0) >= 0.9 * asked_w,
            STATE_TIMEOUT_S,
            start,
        )
        bridge_log = fleet.logs("inverter-bridge")
        assert ack is not None, f"no ack of a {asked_w} W discharge from the inverter bridge:\n{bridge_log}"
        moved = bus.wait_for(truth, lambda p: p["battery_w"] > 0.5 * asked_w, STATE_TIMEOUT_S, start)
        assert moved is not None, (
            "the simulated battery never discharged: "
            f"{[p['battery_w'] for p in bus.since(start, truth)][-10:]}\n{fleet.logs('simulator')}"
        )
    finally:
        bus.publish(topics.mode_set(SITE), {"mode": "auto"})


_STORED_MS = (
    "import json, sqlite3\n"
    "db = sqlite3.connect('file:/app/var/ongrid.sqlite?mode=ro', uri=True)\n"
    "rows = db.execute(\"SELECT ts_ns FROM points WHERE measurement = 'inverter'\").fetchall()\n"
    "print(json.dumps(sorted({ts // 1000000 for (ts,) in rows})))\n"
)


def _stored_inverter_ms(fleet: Fleet) -> set[int]:
    result = fleet.exec("recorder", "python", "-c", _STORED_MS)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_a_recorder_restart_loses_no_data(fleet: Fleet, bus: Messages) -> None:
    inverter = topics.inverter_state(SITE, "inv1")
    _wait_healthy(fleet, "recorder")
    deadline = time.monotonic() + STATE_TIMEOUT_S
    while not _stored_inverter_ms(fleet):
        assert time.monotonic() < deadline, f"the recorder stored nothing:\n{fleet.logs('recorder')}"
        time.sleep(2)
    before = _stored_inverter_ms(fleet)

    podman("stop", "--time", "15", fleet.name("recorder"), timeout=60)
    stopped = time.monotonic()
    # Readings keep coming while the recorder is away; its persistent session keeps them queued.
    while len({p["ts"] for p in bus.since(stopped, inverter)}) < 3:
        assert time.monotonic() - stopped < STATE_TIMEOUT_S, "no inverter state while the recorder was stopped"
        time.sleep(1)
    missed = {_ts_ms(p) for p in bus.since(stopped, inverter)}
    podman("start", fleet.name("recorder"), timeout=60)
    fleet.started_at = time.monotonic()
    print(f"\nrecorder: seconds from `podman start` to healthy: {_wait_healthy(fleet, 'recorder'):.1f}")

    deadline = time.monotonic() + STATE_TIMEOUT_S
    while not missed <= (after := _stored_inverter_ms(fleet)):
        assert fleet.running("recorder"), fleet.logs("recorder")
        assert time.monotonic() < deadline, (
            f"{len(missed - after)} of {len(missed)} readings from the restart never stored:\n{fleet.logs('recorder')}"
        )
        time.sleep(2)
    assert before <= after, f"{len(before - after)} rows stored before the restart are gone"


def test_every_ongrid_command_works_in_the_image(fleet: Fleet, tmp_path: Path) -> None:
    commands = podman("run", "--rm", IMAGE, "ongrid", "--help").stdout
    names = ["inverter-bridge", "bms-bridge", "meter-bridge", "dispatcher", "recorder", "simulator", "simulate"]
    names += ["backtest", "report", "status", "demo"]
    for name in names:
        assert name in commands, name
    # The six services run in the fleet; status, backtest, report and demo run below; `simulate` is
    # the simulator under another name: its --help shows the alias resolves in the image.
    alias = podman("run", "--rm", IMAGE, "ongrid", "simulate", "--help", check=False)
    assert alias.returncode == 0 and "Usage" in alias.stdout, alias.stdout + alias.stderr

    # The dev tools (a private broker, throwaway databases) stay out of the image, and say so.
    demo = podman("run", "--rm", IMAGE, "ongrid", "demo", check=False)
    assert demo.returncode == 2, demo.stdout + demo.stderr
    assert "development tool" in demo.stderr and "Traceback" not in demo.stderr, demo.stderr

    # Against the running fleet, as the docs say: `docker compose exec dispatcher ongrid status`.
    status = fleet.exec("dispatcher", "ongrid-entrypoint", "ongrid", "status", "--json", "--wait", "5")
    assert status.returncode == 0, status.stdout + status.stderr
    assert topics.inverter_state(SITE, "inv1") in status.stdout, status.stdout[:2000]

    # Two weeks of the bundled year (the whole year takes minutes and proves nothing more here).
    year = ROOT / "deploy" / "scenarios" / "seed-house-year.csv"
    weeks = tmp_path / "two-weeks.csv"
    weeks.write_text("".join(year.read_text().splitlines(keepends=True)[: 1 + 14 * 48]))
    weeks.chmod(0o644)
    backtest = podman(
        "run", "--rm",
        "--mount", f"type=bind,src={ROOT / 'deploy/compose/demo-house.yaml'},dst=/config/ongrid.yaml,ro=true",
        "--mount", f"type=bind,src={weeks},dst=/data/two-weeks.csv,ro=true",
        IMAGE, "ongrid", "backtest", "--data", "/data/two-weeks.csv",
        "--config", "/config/ongrid.yaml", "--policy", "self_use", "--json", "--no-progress",
        timeout=600,
    )  # fmt: skip
    result = json.loads(backtest.stdout)
    assert result["meta"]["rows"] == 14 * 48, result["meta"]
    assert result["policies"]["self_use"]["cost"] < result["policies"]["none"]["cost"], result["policies"]

    day = _stored_day(fleet)
    report = fleet.exec("recorder", "ongrid", "report", "--from", day, "--to", day, "--out", "/app/var/report")
    assert report.returncode == 0, report.stdout + report.stderr
    assert "Matplotlib created a temporary cache directory" not in report.stderr, report.stderr
    listing = fleet.exec("recorder", "ls", "/app/var/report").stdout.split()
    assert "index.html" in listing and any(name.endswith(".png") for name in listing), listing


def _stored_day(fleet: Fleet) -> str:
    """The simulated day the recorder has data for (the demo house starts 2026-04-01 at 60x)."""
    stored = _stored_inverter_ms(fleet)
    if not stored:
        pytest.fail("the recorder stored nothing")
    return datetime.fromtimestamp(max(stored) / 1000, ZoneInfo("Europe/London")).strftime("%Y-%m-%d")


def test_a_serial_device_passed_through_works(fleet: Fleet, tmp_path: Path) -> None:
    """An RS485 meter on a serial line, as docs/deployment.md passes one to the meter bridge.

    The line is a socat pty pair: pymodbus's RTU server plays an SDM120 on the host end, the other
    end goes into a meter-bridge container at /dev/ttyUSB0, owned by group dialout as USB adapters
    are, opened by the image's uid 10001 through compose's ``group_add: [dialout]``. A pty's slave
    opens only through its own devpts, so it is bind-mounted; a real adapter is a ``devices:`` entry.
    """
    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("socat is not installed (make test-image installs it as root)")
    host_end, container_end = tmp_path / "meter-host", tmp_path / "meter-container"
    line = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={host_end}", f"pty,raw,echo=0,link={container_end},group=dialout,mode=660"]
    )
    meter = None
    client = None
    try:
        deadline = time.monotonic() + 10
        while not (host_end.exists() and container_end.exists()):
            assert time.monotonic() < deadline and line.poll() is None, "socat made no pty pair"
            time.sleep(0.1)
        meter = subprocess.Popen(
            [sys.executable, "-m", "tests.image.rtu_meter", str(host_end)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert meter.stdout is not None and meter.stdout.readline().strip() == "serving"
        config = tmp_path / "rs485.yaml"
        config.write_text(
            "site: rs485\n"
            "meters:\n"
            "  - id: grid\n"
            "    model: eastron_sdm120\n"
            "    role: grid\n"
            "    transport: {kind: modbus_rtu, device: /dev/ttyUSB0, baudrate: 9600, unit: 1}\n"
        )
        config.chmod(0o644)
        client = Messages(fleet.broker_port, "homeassistant", fleet.password("homeassistant"), "ongrid/rs485/#")
        fleet.start_service(
            "meter-bridge",
            container=fleet.name("meter-bridge-rs485"),
            config=config,
            extra=["--mount", f"type=bind,src={container_end.resolve()},dst=/dev/ttyUSB0"],
        )
        reading = client.wait_for(topics.meter_state("rs485", "grid"), lambda p: "voltage_v" in p, STATE_TIMEOUT_S)
        assert reading is not None, podman("logs", fleet.name("meter-bridge-rs485"), check=False).stdout[-3000:]
        # The values the RTU server holds, decoded by the bridge in the container.
        assert reading["voltage_v"] == pytest.approx(231.25)
        assert reading["current_a"] == pytest.approx(4.5)
        assert reading["power_w"] == pytest.approx(1034.5)
        assert reading["frequency_hz"] == pytest.approx(50.0)
        energy = client.wait_for(
            topics.meter_state("rs485", "grid"), lambda p: p.get("import_energy_wh", 0) > 0, STATE_TIMEOUT_S
        )
        assert energy is not None and energy["import_energy_wh"] == pytest.approx(1_234_500.0)
        assert energy["export_energy_wh"] == pytest.approx(67_250.0)
    finally:
        if client is not None:
            client.close()
        for process in (meter, line):
            if process is not None:
                process.terminate()
                process.wait(10)
