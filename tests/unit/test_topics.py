import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import topics
from shared.contract import channels, model_for_topic
from shared.messages import Availability, InverterCommand, ModeRequest
from shared.topics import Kind, Stream


def test_names_follow_the_grammar() -> None:
    assert topics.inverter_state("home", "inv1") == "ongrid/home/inverter/inv1/state"
    assert topics.mode_set("home") == "ongrid/home/dispatcher/mode/set"
    assert topics.all_of(kind=Kind.METER, stream=Stream.STATE) == "ongrid/+/meter/+/state"
    assert topics.shared("recorders", "ongrid/+/+/+/state") == "$share/recorders/ongrid/+/+/+/state"


@pytest.mark.parametrize("bad", ["", "a/b", "#", "x" * 65, "spa ce"])
def test_bad_names_are_refused_with_the_value(bad: str) -> None:
    with pytest.raises(ValueError, match="device"):
        topics.inverter_state("home", bad)


def test_parse_inverts_topic() -> None:
    parts = topics.parse("ongrid/home/bms/bat1/state")
    assert (parts.site, parts.kind, parts.device, parts.stream) == ("home", Kind.BMS, "bat1", Stream.STATE)
    with pytest.raises(ValueError, match="not of the form"):
        topics.parse("zigbee2mqtt/lamp")
    with pytest.raises(ValueError, match="toaster"):
        topics.parse("ongrid/home/toaster/t/state")


@given(
    st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True),
    st.sampled_from(list(Kind)),
    st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True),
    st.sampled_from(list(Stream)),
)
def test_parse_round_trip(site: str, kind: Kind, device: str, stream: Stream) -> None:
    parts = topics.parse(topics.topic(site, kind, device, stream))
    assert (parts.site, parts.kind, parts.device, parts.stream) == (site, kind, device, stream)


def test_contract_maps_topics_to_models() -> None:
    assert model_for_topic("ongrid/h/inverter/i/command") is InverterCommand
    assert model_for_topic("ongrid/h/meter/grid/availability") is Availability
    assert model_for_topic("ongrid/h/dispatcher/mode/set") is ModeRequest
    assert model_for_topic("homeassistant/sensor/x/y/config") is None
    assert len({(k, s) for k, s, _ in channels()}) == len(channels())
