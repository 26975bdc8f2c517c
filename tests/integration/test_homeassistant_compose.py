"""Issue 15 item 6 as deployed: a home that runs only the bridges (monitoring, no control) gets
its entities, with values.

test_homeassistant_bridges.py runs the bridges against an open broker without a BMS to read; this
runs the compose deployment as local processes (tests/support/compose_local.py): the real mosquitto
with the project's conf, ACL and per-service users (so each bridge announces and clears under its
own broker user), the simulator as every device (the BMS included), and the real inverter-, bms-
and meter-bridge processes as compose starts them; no dispatcher, no recorder. Home Assistant is
played by a client logged in as the ``homeassistant`` user that reads the retained discovery
configs with a fresh session each time, as HA does at start, and renders the sensors' templates
with Jinja2 (HA's engine) against the states the bridges publish.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import jinja2
import pytest

from shared import homeassistant as ha
from shared import topics
from shared.config import OngridConfig, load_config
from shared.topics import Kind
from tests.support import stop_all
from tests.support.compose_local import ConfigEdit, LocalCompose, local_compose

BRIDGES = {"inverter-bridge": Kind.INVERTER, "bms-bridge": Kind.BMS, "meter-bridge": Kind.METER}
# Generous: four processes start on a busy 2-core machine, the simulator at 60x.
TIMEOUT_S = 150.0

Retained = dict[str, bytes]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCompose]:
    with local_compose(tmp_path_factory.mktemp("ha-bridges"), profiles=("demo",)) as running:
        running.start("simulator")
        for name in BRIDGES:
            running.start(name)
        yield running


def _config(fleet: LocalCompose, service: str) -> OngridConfig:
    """The config the running service was started with (its mapped ongrid.yaml)."""
    return load_config(Path(fleet.workdir / "run" / service / "ongrid.yaml"))


def _wanted(fleet: LocalCompose) -> dict[str, dict[str, Any]]:
    """What the running bridges should announce, each from the config it was started with."""
    wanted: dict[str, dict[str, Any]] = {}
    for service, kind in BRIDGES.items():
        wanted |= ha.discovery_configs(_config(fleet, service), (kind,))
    return wanted


async def _retained(fleet: LocalCompose, pattern: str, settle_s: float = 1.5) -> Retained:
    """Every non-empty retained message under ``pattern`` as the ``homeassistant`` user sees it."""
    found: Retained = {}
    async with aiomqtt.Client(
        "127.0.0.1",
        fleet.broker_port,
        username="homeassistant",
        password=fleet.password("homeassistant"),
        identifier=f"homeassistant-{uuid.uuid4().hex[:6]}",
        timeout=10,
    ) as client:
        await client.subscribe(pattern, qos=1)
        try:
            async with asyncio.timeout(settle_s):
                async for message in client.messages:
                    if message.retain and message.payload:
                        found[str(message.topic)] = bytes(message.payload)  # type: ignore[arg-type]
        except TimeoutError:
            pass
    return found


async def _until(fleet: LocalCompose, pattern: str, done: Callable[[Retained], bool]) -> Retained:
    deadline = time.monotonic() + TIMEOUT_S
    seen = await _retained(fleet, pattern)
    while not done(seen) and time.monotonic() < deadline:
        for name, process in fleet.processes.items():
            assert process.poll() is None, f"{name} exited with {process.returncode}:\n{fleet.log(name)}"
        await asyncio.sleep(1.0)
        seen = await _retained(fleet, pattern)
    return seen


def _configs(retained: Retained) -> dict[str, dict[str, Any]]:
    return {topic: json.loads(payload) for topic, payload in retained.items()}


def _discovery(site: str) -> str:
    return topics.ha_discovery_pattern(ha.node_id(site))


async def test_the_bridges_alone_announce_every_device(fleet: LocalCompose) -> None:
    assert "dispatcher" not in fleet.processes and "recorder" not in fleet.processes
    wanted = _wanted(fleet)
    site = _config(fleet, "meter-bridge").site
    seen = _configs(await _until(fleet, _discovery(site), lambda r: _configs(r) == wanted))
    logs = "\n".join(f"--- {name}\n{fleet.log(name)}" for name in BRIDGES)
    assert seen == wanted, logs
    kinds = {topic.split("/")[3].split("_")[0] for topic in seen}
    assert kinds == {"inverter", "bms", "meter"}, "no dispatcher or statistics entities without those services"
    assert {"homeassistant/sensor/ongrid_seed/bms_bat1_module5_soc/config"} <= seen.keys()


def _render(template: str, payload: bytes) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    return env.from_string(template).render(value=payload.decode(), value_json=json.loads(payload))


async def test_the_entities_show_the_bridges_readings(fleet: LocalCompose) -> None:
    """What HA would show: every entity available (both its availability topics say online) with a
    number read by its template from the state the bridge publishes."""
    wanted = _wanted(fleet)
    site = _config(fleet, "meter-bridge").site
    picked = [
        topics.ha_discovery("sensor", ha.node_id(site), object_id)
        for object_id in (
            "inverter_inv1_soc",
            "inverter_inv1_grid_power",
            "bms_bat1_soc",
            "bms_bat1_cell_spread",
            *(f"bms_bat1_module{n}_soc" for n in range(1, 6)),
            "bms_bat1_module5_cell_spread",
            "meter_grid_power",
            "meter_pv_import_energy",
        )
    ]
    needed = {wanted[t]["state_topic"] for t in picked} | {
        entry["topic"] for t in picked for entry in wanted[t]["availability"]
    }

    def online(retained: Retained) -> bool:
        availability = [t for t in needed if t.endswith("/availability")]
        return needed <= retained.keys() and all(json.loads(retained[t])["state"] == "online" for t in availability)

    states = await _until(fleet, f"{topics.ROOT}/{site}/#", online)
    assert needed <= states.keys(), sorted(needed - states.keys())
    for topic in picked:
        config = wanted[topic]
        for entry in config["availability"]:
            assert _render(entry["value_template"], states[entry["topic"]]) == entry["payload_available"], entry
        value = _render(config["value_template"], states[config["state_topic"]])
        assert value != "None", f"{topic}: no number in {states[config['state_topic']][:300]!r}"
        float(value)


def _without_pv_meter_and_fifth_module(data: dict[str, Any]) -> dict[str, Any]:
    data["meters"] = [meter for meter in data["meters"] if meter["id"] != "pv"]
    data["batteries"] = [{**battery, "modules": 4} for battery in data["batteries"]]
    return data


def _restart(fleet: LocalCompose, name: str, edit: ConfigEdit) -> None:
    stop_all([fleet.processes[name]], grace_s=15)
    fleet.start(name, edit)


async def test_removing_a_device_from_the_config_removes_its_entities(fleet: LocalCompose) -> None:
    site = _config(fleet, "meter-bridge").site
    before = _configs(await _until(fleet, _discovery(site), lambda r: _configs(r) == _wanted(fleet)))
    assert before == _wanted(fleet)
    removed = {t for t in before if "/meter_pv_" in t or "/bms_bat1_module5_" in t}
    assert len(removed) == len(ha.METER_SENSORS) + len(ha.MODULE_SENSORS)

    _restart(fleet, "meter-bridge", _without_pv_meter_and_fifth_module)
    _restart(fleet, "bms-bridge", _without_pv_meter_and_fifth_module)
    expected = {t: p for t, p in before.items() if t not in removed}
    after = _configs(await _until(fleet, _discovery(site), lambda r: _configs(r) == expected))
    assert after == expected
    # What the restarted bridges now announce is exactly what their edited configs say.
    assert expected == _wanted(fleet)
    # The broker holds no config for them any more (an empty retained payload deleted each).
    assert not (await _retained(fleet, _discovery(site))).keys() & removed
