from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config import ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "ongrid.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ongrid.yaml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ONGRID_CONFIG", raising=False)
    cfg = load_config()
    assert cfg.site == "home"
    assert cfg.mqtt.port == 1883
    assert cfg.influxdb is None


def test_the_documented_example_is_valid() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.inverters and cfg.meters and cfg.batteries
    kinds = {i.transport.kind for i in cfg.inverters} | {m.transport.kind for m in cfg.meters}
    assert "solarman_v5" in kinds or "modbus_tcp" in kinds


def test_unknown_key_is_named_by_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt:\n  host: broker\n  prot: 1883\n")
    with pytest.raises(ConfigError, match=r"mqtt\.prot: unknown key"):
        load_config(path)


def test_bad_value_is_named_with_the_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "batteries:\n  - id: b1\n    usable_kwh: -3\n    transport: {kind: serial, device: /dev/ttyUSB0}\n",
    )
    with pytest.raises(ConfigError, match=r"batteries\.0\.usable_kwh.*-3"):
        load_config(path)


def test_bad_transport_kind(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "meters:\n  - {id: g, model: eastron_sdm120, role: grid, transport: {kind: carrier_pigeon}}\n",
    )
    with pytest.raises(ConfigError, match=r"meters\.0\.transport"):
        load_config(path)


def test_duplicate_ids(tmp_path: Path) -> None:
    meter = "  - {id: g, model: eastron_sdm120, role: grid, transport: {kind: modbus_tcp, host: h}}\n"
    with pytest.raises(ConfigError, match="appears twice"):
        load_config(write(tmp_path, "meters:\n" + meter + meter))


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "site: attic\nmqtt: {host: fromfile, port: 1999}\n")
    monkeypatch.setenv("ONGRID_CONFIG", str(path))
    monkeypatch.setenv("ONGRID_MQTT__HOST", "fromenv")
    cfg = load_config()
    assert (cfg.site, cfg.mqtt.host, cfg.mqtt.port) == ("attic", "fromenv", 1999)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "mqtt: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a list\n"))


def test_soc_limits_must_be_ordered(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "batteries:\n  - id: b\n    usable_kwh: 5\n    min_soc_pct: 30\n    reserve_soc_pct: 20\n"
        "    transport: {kind: serial, device: /dev/ttyUSB0}\n",
    )
    with pytest.raises(ConfigError, match="min_soc_pct <= reserve_soc_pct"):
        load_config(path)


_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["site", "mqtt", "inverters", "meters", "tariff", "loads", "x"]), _yaml_values
    )
)
def test_fuzzed_config_only_ever_raises_config_error(
    tmp_path_factory: pytest.TempPathFactory, data: dict
) -> None:
    import yaml

    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        load_config(path)
    except ConfigError as exc:
        assert "invalid configuration" in str(exc) or "config file" in str(exc)


def test_dispatcher_and_inverter_quantise_alike(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inverters:\n  - {id: inv, quantum_w: 100, transport: {kind: modbus_tcp, host: h}}\n"
        "dispatcher: {quantum_w: 50}\n",
    )
    with pytest.raises(ConfigError, match=r"dispatcher.quantum_w \(50\) must equal the quantum_w of inverter 'inv'"):
        load_config(path)


def test_a_battery_on_can_only_needs_no_transport() -> None:
    # Issue 15 item 3: the CAN-only home (the first example in docs/configuration.md) loads; no
    # BMS is read for its battery: the dispatcher subscribes to none, discovery offers none, and the
    # bms-bridge finds nothing to poll; the configured limits make the dispatcher's battery model.
    from services.bms_bridge.service import make_pollers
    from services.dispatcher.service import battery_model, devices
    from shared.config.reference import EXAMPLE_FILES, EXAMPLES
    from shared.homeassistant import discovery_configs

    first_title, first_file = EXAMPLE_FILES[0]
    assert first_file == "can-only-home.yaml" and "CAN" in first_title
    cfg = load_config(EXAMPLES / first_file)
    (battery,) = cfg.batteries
    assert battery.transport is None and not battery.has_bms_link
    assert devices(cfg).battery is None
    model = battery_model(cfg)
    assert (model.max_charge_w, model.max_discharge_w, model.capacity_wh) == (2500.0, 2500.0, 9600.0)
    assert not [topic for topic in discovery_configs(cfg) if "_bms_" in topic or "/bms" in topic]
    assert make_pollers(cfg.batteries) == []
