from pathlib import Path

import yaml

from services.devtools.demo import SCENARIO, relocate_scenario
from shared.config import load_config


def test_relocated_scenario_is_a_consistent_config(tmp_path: Path) -> None:
    ports = iter(range(40000, 40100))
    data = relocate_scenario(yaml.safe_load(SCENARIO.read_text()), tmp_path, lambda: next(ports), 41000, speed=60)
    path = tmp_path / "ongrid.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    assert cfg.mqtt.port == 41000 and cfg.clock == "simulator"
    listen_ports = {d["listen"].get("port") for d in data["simulator"]["devices"]} - {None}
    # every fleet transport that used a TCP port points at a simulated device's new port
    used = {i.transport.port for i in cfg.inverters if hasattr(i.transport, "port")}
    used |= {m.transport.port for m in cfg.meters if hasattr(m.transport, "port")}
    assert used and used <= listen_ports and all(p >= 40000 for p in used)
    # ptys and state moved into the work dir
    for meter in cfg.meters:
        if hasattr(meter.transport, "device"):
            assert meter.transport.device.startswith(str(tmp_path))
    assert cfg.dispatcher.state_dir.startswith(str(tmp_path))
    # simulated-time durations are at least 30 wall seconds at 60x
    assert cfg.dispatcher.lease_s >= 30 * 60
    assert data["simulator"]["inverter"]["passive_timeout_s"] >= 60 * 60


def test_compose_demo_house_durations_fit_its_speed() -> None:
    """The compose demo runs at a fixed speed without relocate_scenario: its file must already
    give every simulated-time duration the wall-clock room the local demo would give it."""
    from services.devtools.demo import _scale_durations

    path = SCENARIO.parents[1] / "compose" / "demo-house.yaml"
    data = yaml.safe_load(path.read_text())
    scaled = yaml.safe_load(path.read_text())
    _scale_durations(scaled, float(data["simulator"]["speed"]))
    assert scaled == data, "deploy/compose/demo-house.yaml: raise the durations _scale_durations changes"
