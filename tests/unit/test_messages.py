import json
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared import messages as m
from shared.examples import EXAMPLES


def test_every_model_has_an_example() -> None:
    assert set(m.ALL_MESSAGES) == set(EXAMPLES)


@pytest.mark.parametrize("model", m.ALL_MESSAGES, ids=lambda c: c.__name__)
def test_round_trip_through_json(model: type[m.Message]) -> None:
    example = EXAMPLES[model]
    data = json.loads(example.to_json())
    assert data["v"] == model.SCHEMA_VERSION
    assert data["ts"].endswith("Z")
    assert model.model_validate_json(example.to_json()) == example


@pytest.mark.parametrize("model", m.ALL_MESSAGES, ids=lambda c: c.__name__)
def test_unknown_fields_are_refused(model: type[m.Message]) -> None:
    data = json.loads(EXAMPLES[model].to_json())
    data["surprise_w"] = 1
    with pytest.raises(ValidationError, match="surprise_w"):
        model.model_validate(data)


@pytest.mark.parametrize("model", m.ALL_MESSAGES, ids=lambda c: c.__name__)
def test_other_schema_versions_are_refused(model: type[m.Message]) -> None:
    data = json.loads(EXAMPLES[model].to_json())
    data["v"] = model.SCHEMA_VERSION + 1
    with pytest.raises(ValidationError, match="not supported"):
        model.model_validate(data)


def test_naive_timestamps_are_refused_and_offsets_become_utc() -> None:
    data = json.loads(EXAMPLES[m.MeterState].to_json())
    data["ts"] = "2026-01-15T12:00:00"
    with pytest.raises(ValidationError, match="timezone"):
        m.MeterState.model_validate(data)
    data["ts"] = "2026-01-15T13:00:00+01:00"
    parsed = m.MeterState.model_validate(data)
    assert parsed.ts.utcoffset().total_seconds() == 0
    assert parsed.ts.hour == 12


def test_non_finite_numbers_are_refused() -> None:
    data = json.loads(EXAMPLES[m.MeterState].to_json())
    data["power_w"] = float("nan")
    with pytest.raises(ValidationError, match="power_w"):
        m.MeterState.model_validate_json(json.dumps(data))


def test_models_are_frozen() -> None:
    with pytest.raises(ValidationError):
        EXAMPLES[m.MeterState].power_w = 1.0  # type: ignore[misc]


def test_example_inverter_balances() -> None:
    s = EXAMPLES[m.InverterState]
    assert isinstance(s, m.InverterState)
    assert s.load_power_w == pytest.approx(s.pv_power_w + s.grid_power_w + s.battery_power_w)


def test_mode_request_accepts_a_hand_written_payload() -> None:
    request = m.ModeRequest.model_validate_json(
        b'{"mode": "force_charge", "until": "2026-01-15T07:00:00+00:00"}'
    )
    assert request.mode is m.DispatcherModeName.FORCE_CHARGE
    assert request.v == 1
    with pytest.raises(ValidationError, match="mode"):
        m.ModeRequest.model_validate_json(b'{"mode": "turbo"}')


def test_command_battery_setpoint_sign() -> None:
    ts = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    assert m.InverterCommand(ts=ts, mode="charge", power_w=500).battery_power_w == -500
    assert m.InverterCommand(ts=ts, mode="discharge", power_w=500).battery_power_w == 500
    assert m.InverterCommand(ts=ts, mode="self_use").battery_power_w is None


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_validation_errors(payload: bytes) -> None:
    for model in m.ALL_MESSAGES:
        try:
            model.model_validate_json(payload)
        except ValidationError:
            pass
