"""Discovery payloads checked against Home Assistant's documented configuration variables.

The tables below are transcribed from HA's docs (integrations/sensor.mqtt, integrations/select.mqtt,
integrations/mqtt "Using availability topics" and "Device registry", integrations/sensor "Device
class" and the energy dashboard's sensor requirements). Templates are rendered with Jinja2, the
engine HA uses, against the contract's example payloads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import homeassistant as ha
from shared import messages as m
from shared import topics
from shared.config import OngridConfig, load_config
from shared.examples import EXAMPLES

# -- HA's documentation as data -------------------------------------------------------------------

REQUIRED = {
    "sensor": {"state_topic"},
    "select": {"command_topic", "options"},
}
COMMON = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "device",
    "default_entity_id",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "object_id",
    "origin",
    "payload_available",
    "payload_not_available",
    "platform",
    "qos",
    "unique_id",
    "value_template",
}
DOCUMENTED = {
    "sensor": COMMON
    | {
        "device_class",
        "expire_after",
        "force_update",
        "last_reset_value_template",
        "options",
        "state_class",
        "state_topic",
        "suggested_display_precision",
        "unit_of_measurement",
    },
    "select": COMMON | {"command_template", "command_topic", "optimistic", "options", "retain", "state_topic"},
}
AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
AVAILABILITY_MODES = {"all", "any", "latest"}
DEVICE_KEYS = {
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
# Sensor device classes and the units HA accepts for each (sensor docs, "Device class").
UNITS = {
    "battery": {"%"},
    "power": {"W", "kW", "MW", "mW", "GW", "TW", "BTU/h"},
    "energy": {"Wh", "kWh", "MWh", "GWh", "TWh", "mWh", "MJ", "GJ", "cal", "kcal", "Mcal", "Gcal"},
    "voltage": {"V", "mV", "µV", "kV", "MV"},
    "current": {"A", "mA"},
    "temperature": {"°C", "°F", "K"},
}
STATE_CLASSES = {"measurement", "total", "total_increasing", "measurement_angle"}
# The energy dashboard only lists energy sensors with one of these state classes.
ENERGY_DASHBOARD_STATE_CLASSES = {"total", "total_increasing"}

SCENARIO = "deploy/scenarios/seed-house.yaml"


def _cfg(**overrides: Any) -> OngridConfig:
    return load_config(SCENARIO, **overrides)


@pytest.fixture(scope="module")
def configs() -> dict[str, dict[str, Any]]:
    return ha.discovery_configs(_cfg())


def _component(topic: str) -> str:
    return topic.split("/")[1]


def _render(template: str, **variables: Any) -> str:
    # HA's template environment is Jinja2 with extra filters; ours use only Jinja2's own.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    return env.from_string(template).render(**variables)


def _render_value(template: str, message: m.Message) -> str:
    payload = message.to_json().decode()
    return _render(template, value=payload, value_json=json.loads(payload))


# -- the documented keys --------------------------------------------------------------------------


def test_every_config_has_the_required_keys_and_only_documented_ones(configs: dict[str, dict[str, Any]]) -> None:
    assert configs
    for topic, payload in configs.items():
        component = _component(topic)
        assert component in REQUIRED, topic
        missing = REQUIRED[component] - payload.keys()
        assert not missing, f"{topic}: missing {missing}"
        unknown = payload.keys() - DOCUMENTED[component]
        assert not unknown, f"{topic}: undocumented keys {unknown}"


def test_discovery_topics_follow_ha_grammar_under_the_site_node(configs: dict[str, dict[str, Any]]) -> None:
    node = ha.node_id("seed")
    for topic in configs:
        prefix, component, node_id, object_id, last = topic.split("/")
        assert (prefix, node_id, last) == (topics.HA_DISCOVERY_PREFIX, node, "config")
        assert component in REQUIRED
        topics.check_name(object_id, "object_id")


def test_unique_ids_are_unique_and_site_scoped(configs: dict[str, dict[str, Any]]) -> None:
    ids = [payload["unique_id"] for payload in configs.values()]
    assert len(ids) == len(set(ids))
    assert all(uid.startswith("ongrid_seed_") for uid in ids)
    other = ha.discovery_configs(_cfg(site="cabin"))
    assert not set(ids) & {payload["unique_id"] for payload in other.values()}


def test_availability_is_json_aware_and_names_both_device_and_service(configs: dict[str, dict[str, Any]]) -> None:
    for topic, payload in configs.items():
        assert payload["availability_mode"] in AVAILABILITY_MODES
        assert "availability_topic" not in payload, "HA refuses availability together with availability_topic"
        for entry in payload["availability"]:
            assert "topic" in entry and entry.keys() <= AVAILABILITY_KEYS, topic
            for state, key in (("online", "payload_available"), ("offline", "payload_not_available")):
                message = m.Availability(ts=m.utc_now(), state=m.AvailabilityState(state))
                assert _render_value(entry["value_template"], message) == entry[key]
    inverter = configs[topics.ha_discovery("sensor", "ongrid_seed", "inverter_inv1_soc")]
    assert [a["topic"] for a in inverter["availability"]] == [
        topics.service_availability("seed", "inverter-bridge"),
        topics.availability("seed", topics.Kind.INVERTER, "inv1"),
    ]


def test_devices_and_origin_carry_documented_keys(configs: dict[str, dict[str, Any]]) -> None:
    for topic, payload in configs.items():
        device = payload["device"]
        assert device.keys() <= DEVICE_KEYS, topic
        assert device.get("identifiers") or device.get("connections"), topic
        assert payload["origin"].keys() <= ORIGIN_KEYS and payload["origin"]["name"]


def test_units_match_device_classes_and_energy_sensors_suit_the_energy_dashboard(
    configs: dict[str, dict[str, Any]],
) -> None:
    energy = 0
    for topic, payload in configs.items():
        if _component(topic) != "sensor" or "device_class" not in payload:
            continue
        assert payload["unit_of_measurement"] in UNITS[payload["device_class"]], topic
        assert payload["state_class"] in STATE_CLASSES, topic
        if payload["device_class"] == "energy":
            energy += 1
            assert payload["state_class"] in ENERGY_DASHBOARD_STATE_CLASSES, topic
        if payload["device_class"] in ("power", "battery"):
            assert payload["state_class"] == "measurement", topic
    # inverter: 4 today + 4 total; grid meter: import + export; daily stats: 6.
    assert energy == 8 + 2 + 6


# -- the templates against real payloads -------------------------------------------------------------


@pytest.mark.parametrize(
    ("object_id", "model", "expected"),
    [
        ("inverter_inv1_soc", m.InverterState, 54.0),
        ("inverter_inv1_battery_power", m.InverterState, -1200.0),
        ("bms_bat1_soc", m.BatteryState, None),
        ("meter_grid_power", m.MeterState, None),
    ],
)
def test_value_templates_read_the_contract_payloads(
    configs: dict[str, dict[str, Any]], object_id: str, model: type[m.Message], expected: float | None
) -> None:
    payload = configs[topics.ha_discovery("sensor", "ongrid_seed", object_id)]
    example = EXAMPLES[model]
    rendered = float(_render_value(payload["value_template"], example))
    if expected is not None:
        assert rendered == expected


def _stack(state: m.BatteryState, modules: int) -> m.BatteryState:
    """The example's module repeated for each module of the seed's stack (five), as the BMS reports it."""
    first = state.modules[0]
    return state.model_copy(update={"modules": tuple(first.model_copy(update={"index": i}) for i in range(modules))})


def test_every_sensor_template_renders_a_number_from_its_state_payload(configs: dict[str, dict[str, Any]]) -> None:
    by_state_topic = {
        topics.inverter_state("seed", "inv1"): EXAMPLES[m.InverterState],
        topics.battery_state("seed", "bat1"): _stack(EXAMPLES[m.BatteryState], modules=5),
        topics.meter_state("seed", "grid"): EXAMPLES[m.MeterState],
        topics.daily_stats("seed"): EXAMPLES[m.DailyStats],
    }
    for topic, payload in configs.items():
        example = by_state_topic.get(payload["state_topic"])
        if example is None or _component(topic) != "sensor":
            continue
        value = float(_render_value(payload["value_template"], example))
        if payload.get("unit_of_measurement") == "kWh":
            field = payload["value_template"].split("value_json.")[1].split(" ")[0]
            assert value == pytest.approx(getattr(example, field) / 1000, abs=1e-3), topic


def test_energy_counters_convert_wh_to_kwh() -> None:
    spec = next(s for s in ha.INVERTER_SENSORS if s.key == "pv_energy_total")
    state = EXAMPLES[m.InverterState].model_copy(update={"pv_energy_total_wh": 1_234_567.0})
    assert _render_value(spec.value_template(), state) == "1234.567"


def test_mode_select_sends_a_mode_request_the_dispatcher_accepts(configs: dict[str, dict[str, Any]]) -> None:
    select = configs[topics.ha_discovery("select", "ongrid_seed", "dispatcher_mode")]
    assert select["command_topic"] == topics.mode_set("seed")
    assert select["state_topic"] == topics.mode_state("seed")
    assert select["options"] == [mode.value for mode in m.DispatcherModeName]
    for option in select["options"]:
        request = m.ModeRequest.model_validate_json(_render(select["command_template"], value=option))
        assert request.mode.value == option
    state = m.DispatcherMode(ts=m.utc_now(), mode=m.DispatcherModeName.HOLD, set_by="homeassistant")
    assert _render_value(select["value_template"], state) == "hold"
    assert select["retain"] is False, "a retained mode request would be replayed at every dispatcher start"


def test_decision_sensor_shows_reason_and_numbers(configs: dict[str, dict[str, Any]]) -> None:
    sensor = configs[topics.ha_discovery("sensor", "ongrid_seed", "dispatcher_reason")]
    decision = EXAMPLES[m.DispatcherDecision]
    assert _render_value(sensor["value_template"], decision) == decision.reason
    attributes = json.loads(_render_value(sensor["json_attributes_template"], decision))
    assert attributes == decision.numbers


# -- removal ----------------------------------------------------------------------------------------


def test_a_removed_meter_leaves_exactly_its_configs_stale() -> None:
    both = _cfg()
    meters = (*both.meters, both.meters[0].model_copy(update={"id": "heatpump"}))
    with_two = ha.discovery_configs(both.model_copy(update={"meters": meters}))
    with_one = ha.discovery_configs(both)
    stale = ha.stale_topics(with_two, with_one)
    assert stale == sorted(t for t in with_two if "/meter_heatpump_" in t)
    assert len(stale) == len(ha.METER_SENSORS)
    assert ha.stale_topics(with_one, with_one) == []


def test_encoding_is_stable_so_restarts_do_not_churn(configs: dict[str, dict[str, Any]]) -> None:
    again = ha.discovery_configs(_cfg())
    assert [ha.encode(p) for p in configs.values()] == [ha.encode(again[t]) for t in configs]


# -- ids --------------------------------------------------------------------------------------------

_names = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(_names, min_size=1, max_size=4), st.lists(_names, min_size=1, max_size=4))
def test_object_ids_are_valid_topic_levels_and_distinct(left: list[str], right: list[str]) -> None:
    a, b = ha.object_id(*left), ha.object_id(*right)
    topics.check_name(a, "object_id")
    if "_".join(left) != "_".join(right):
        assert a != b


@settings(max_examples=50, deadline=None)
@given(_names, _names)
def test_any_valid_device_and_site_ids_give_valid_configs(site: str, device: str) -> None:
    base = _cfg()
    try:
        topics.check_name(f"ongrid_{site}", "node_id")
    except ValueError:
        with pytest.raises(ValueError, match="node_id"):
            ha.node_id(site)
        return
    inverter = base.inverters[0].model_copy(update={"id": device})
    configs = ha.discovery_configs(base.model_copy(update={"site": site, "inverters": (inverter,)}))
    assert sum(1 for t in configs if "/inverter_" in t) == len(ha.INVERTER_SENSORS)
    for topic, payload in configs.items():
        assert topic.startswith(f"homeassistant/{_component(topic)}/ongrid_{site}/")
        assert payload["availability"][0]["topic"].startswith(f"ongrid/{site}/service/")


def test_a_null_field_renders_none_which_home_assistant_shows_as_unknown(configs: dict[str, dict[str, Any]]) -> None:
    # Issue 15 item 2: a stack current the BMS sent implausibly is published as null.
    payload = configs[topics.ha_discovery("sensor", "ongrid_seed", "bms_bat1_power")]
    state = EXAMPLES[m.BatteryState].model_copy(update={"power_w": None, "current_a": None})
    assert _render_value(payload["value_template"], state) == "None"
    assert float(_render_value(payload["value_template"], EXAMPLES[m.BatteryState])) == -1198.0


def test_each_module_has_its_sensors_and_a_module_not_reported_is_unknown(configs: dict[str, dict[str, Any]]) -> None:
    """Five US2000s in the seed: SoC, voltage and cell spread each, read by the module's index."""
    modules = [t for t in configs if "/bms_bat1_module" in t]
    assert len(modules) == 5 * len(ha.MODULE_SENSORS)
    spread = configs[topics.ha_discovery("sensor", "ongrid_seed", "bms_bat1_module3_cell_spread")]
    assert spread["unit_of_measurement"] == "mV" and spread["name"] == "Module 3 cell spread"
    example = EXAMPLES[m.BatteryState]
    third = example.model_copy(update={"modules": (example.modules[0].model_copy(update={"index": 2}),)})
    assert float(_render_value(spread["value_template"], third)) == 10.0
    assert _render_value(spread["value_template"], example) == "None"  # index 2 not in the payload
    stack = configs[topics.ha_discovery("sensor", "ongrid_seed", "bms_bat1_cell_spread")]
    assert float(_render_value(stack["value_template"], example)) == 16.0


def test_each_kind_publishes_only_components_its_service_scans_and_may_write(
    configs: dict[str, dict[str, Any]],
) -> None:
    """A config in a component its service does not scan could never be cleared; one its broker user
    may not write (deploy/mosquitto/acl: the bridges and the recorder sensors only) never arrives."""
    assert set(ha.COMPONENTS) == set(ha.KINDS)
    for kind in ha.KINDS:
        mine = ha.discovery_configs(_cfg(), (kind,))
        assert mine, kind
        for topic in mine:
            assert ha.owned(topic, (kind,)) and not ha.owned(topic, set(ha.KINDS) - {kind}), topic
            assert _component(topic) in ha.COMPONENTS[kind], topic
    assert {c for k in ha.KINDS if k is not topics.Kind.DISPATCHER for c in ha.COMPONENTS[k]} == {"sensor"}
    assert topics.ha_discovery_pattern("ongrid_seed", "sensor") == "homeassistant/sensor/ongrid_seed/+/config"
    assert topics.ha_discovery_pattern("ongrid_seed") == "homeassistant/+/ongrid_seed/+/config"


def test_long_ids_cut_and_hashed_still_belong_to_their_kind_only() -> None:
    # A device id that starts like another kind ("meter_...") or is long enough to be cut and hashed.
    cfg = _cfg()
    inverter = cfg.inverters[0].model_copy(update={"id": "meter_" + "x" * 58})
    meter = cfg.meters[0].model_copy(update={"id": "m" * 64})
    cfg = cfg.model_copy(update={"inverters": (inverter,), "meters": (meter,)})
    for kind in ha.KINDS:
        for topic in ha.discovery_configs(cfg, (kind,)):
            owners = [other for other in ha.KINDS if ha.owned(topic, (other,))]
            assert owners == [kind], topic


def test_plan_sensor_shows_the_expected_cost_in_the_tariff_currency_and_a_summary(
    configs: dict[str, dict[str, Any]],
) -> None:
    sensor = configs[topics.ha_discovery("sensor", "ongrid_seed", "dispatcher_plan")]
    assert sensor["state_topic"] == sensor["json_attributes_topic"] == topics.dispatcher_plan("seed")
    assert sensor["unit_of_measurement"] == _cfg().tariff.currency == "GBP"
    assert "device_class" not in sensor and "state_class" not in sensor
    plan = EXAMPLES[m.Plan]
    assert float(_render_value(sensor["value_template"], plan)) == 1.23
    attributes = json.loads(_render_value(sensor["json_attributes_template"], plan))
    assert attributes == {
        "id": "p1",
        "reason": plan.reason,
        "solver": plan.solver,
        "solve_ms": plan.solve_ms,
        "step_s": 1800,
        "steps": len(plan.steps),
        "soc_pct_start": 54.0,
        "soc_pct_end": plan.steps[-1].soc_pct_end,
    }
    empty = json.loads(_render_value(sensor["json_attributes_template"], plan.model_copy(update={"steps": ()})))
    assert empty["steps"] == 0 and empty["soc_pct_end"] is None
    in_euro = _cfg(tariff=_cfg().tariff.model_copy(update={"currency": "EUR"}))
    euro = ha.discovery_configs(in_euro, (topics.Kind.DISPATCHER,))
    assert euro[topics.ha_discovery("sensor", "ongrid_seed", "dispatcher_plan")]["unit_of_measurement"] == "EUR"


def test_the_broker_acl_grants_each_service_exactly_the_discovery_components_it_uses() -> None:
    """deploy/mosquitto/acl against COMPONENTS: a grant wider than what a service announces (the
    dispatcher once had all of homeassistant/#) would let a compromised service replace or act as
    another's entity; a narrower one would drop its announcements."""
    service_of = {
        topics.Kind.INVERTER: "inverter-bridge",
        topics.Kind.BMS: "bms-bridge",
        topics.Kind.METER: "meter-bridge",
        topics.Kind.STATS: "recorder",
        topics.Kind.DISPATCHER: "dispatcher",
    }
    grants: dict[str, set[str]] = {}
    user = ""
    for line in Path("deploy/mosquitto/acl").read_text().splitlines():
        words = line.split()
        if words[:1] == ["user"]:
            user = words[1]
        elif words[:1] == ["topic"] and words[-1].startswith("homeassistant/") and "write" in words[1]:
            grants.setdefault(user, set()).add(words[-1])
    for kind, service in service_of.items():
        assert grants.pop(service) == {f"homeassistant/{c}/+/+/config" for c in ha.COMPONENTS[kind]}, service
    # People's tools write only Home Assistant's own birth message, never a config.
    assert grants == {"homeassistant": {"homeassistant/status"}}


def test_the_broker_acl_lets_the_dispatcher_switch_every_shipped_configs_loads() -> None:
    """A relay's switch_topic the ACL does not grant is dropped by the broker silently: the load
    would never switch. Every config the project ships is checked against deploy/mosquitto/acl."""
    from paho.mqtt.client import topic_matches_sub

    from shared.config import load_config

    grants, user = [], ""
    for line in Path("deploy/mosquitto/acl").read_text().splitlines():
        words = line.split()
        if words[:1] == ["user"]:
            user = words[1]
        elif user == "dispatcher" and words[:1] == ["topic"] and "write" in words[1]:
            grants.append(words[-1])
    shipped = [Path("deploy/ongrid.example.yaml"), *Path("deploy").glob("*/*.yaml")]
    switched = 0
    for path in shipped:
        if path.parts[1] in ("grafana", "node-red", "podman"):
            continue
        for load in load_config(path).loads:
            if load.switch_topic is not None:
                switched += 1
                assert any(topic_matches_sub(grant, load.switch_topic) for grant in grants), (path, load.switch_topic)
    assert switched, "no shipped config switches a load: the check checks nothing"
