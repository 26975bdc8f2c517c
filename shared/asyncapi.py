"""Generate docs/asyncapi.yaml from the models and the topic table.

The document is derived, never edited by hand: ``make docs`` rewrites it and a test fails when the
committed copy differs from what the code says.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from shared import messages as m
from shared.contract import channels
from shared.examples import EXAMPLES
from shared.topics import ROOT, Stream

TARGET = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"
TOPICS_MD = TARGET.with_name("topics.md")

_TOPICS_INTRO = """# Topics

Every ongrid topic is `ongrid/{site}/{kind}/{device}/{stream}`, built by `shared/topics.py` (nothing
else spells a topic). Payloads are JSON objects validated by the pydantic models in
`shared/messages.py`; full schemas and an example of each are in [asyncapi.yaml](asyncapi.yaml).

**Every payload** has `v` (the model's schema version) and `ts` (ISO-8601 UTC, the time the value
was *read*, not sent). Unknown fields, naive timestamps, NaN and Infinity are refused.

**Sign convention**: power flowing into the house's AC bus is positive. Grid import +, export -;
battery discharge +, charge -; PV +; loads (house, heat pump, immersion, EV) consumption +. So at
every instant `load_w = pv_w + grid_w + battery_w`. Units are in field names (`_w`, `_wh`, `_v`, `_a`,
`_pct`, `_c`, `_hz`, `_per_kwh`).

**Availability**: each service's own availability is
`ongrid/{site}/service/{service}/availability`, retained, set to `offline` by MQTT last will when
the process dies and on a clean stop; bridges publish each device's availability on
`ongrid/{site}/{kind}/{device}/availability` (offline after two failed polls).

**Commands** (`.../command`) are QoS 1, never retained, carry an `id`, a `lease_s` and an
`expires_at` (also sent as MQTT 5 message expiry), and are answered on `.../ack` with
`status: accepted | rejected | error` and a `reason`. **Mode requests** from people or Node-RED go
to `ongrid/{site}/dispatcher/mode/set` as `{"mode": "force_charge", "until": "...",
"target_soc_pct": 80}` (`v` and `ts` may be omitted there); the mode in force is retained on
`ongrid/{site}/dispatcher/mode/state`.

**Bad payloads** are never acted on: the receiving service logs and counts them and answers on the
matching `ack` (commands), on `.../mode/event` (mode requests) or on its own
`ongrid/{site}/service/{service}/event`, with code `invalid_payload` and the validation error. Only
the addressee answers on `ack` and `.../mode/event` (the inverter-bridge for its commands, the
dispatcher for mode requests); a service that reads everything (the recorder) reports a bad one on
its own `event` topic. A command that arrives without an `id` is answered `error` with no
`command_id` and not executed: nobody could match its answer.

**Compatibility**: a breaking change to a model bumps its `v`; receivers refuse versions they do not
speak (with a clear error event) rather than misreading them. Fields are only ever added as optional.

Versions so far:
- `BatteryState` v2 (issue 15): a value the BMS sent that no battery can have is published as `null`
  and named in the new `quality_flags` (`module<i>.<field>`), instead of the whole state being
  withheld. So `current_a`, `power_w`, and in `modules[]` `voltage_v`, `current_a`, `soc_pct`,
  `temps_c[]` and `cells[].voltage_v` may be `null`. To migrate a v1 reader: accept `null` there
  (treat it as unknown, never as 0) and read `v: 2`. A retained v1 state on the broker is refused
  by upgraded readers until the bms-bridge's next poll replaces it.

## Channels

This table is generated from `shared/contract.py` by `make docs`.

| topic | payload | QoS | retained | published by |
|---|---|---|---|---|
"""

# Who publishes each stream, from the point of view of the ongrid fleet.
_RECEIVED_BY_FLEET = {Stream.COMMAND, Stream.SET}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in m.ALL_MESSAGES:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        for name, definition in schema.pop("$defs", {}).items():
            schemas[name] = definition
        schemas[model.__name__] = schema
    return dict(sorted(schemas.items()))


def _message(model: type[m.Message]) -> dict[str, Any]:
    doc = (model.__doc__ or "").strip()
    return {
        "name": model.__name__,
        "title": model.__name__,
        "summary": doc.splitlines()[0] if doc else model.__name__,
        "description": doc,
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        "bindings": {"mqtt": {"qos": model.QOS, "retain": model.RETAIN, "bindingVersion": "0.2.0"}},
        "examples": [{"payload": json.loads(EXAMPLES[model].to_json())}],
    }


def build() -> dict[str, Any]:
    channel_defs: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for kind, stream, model in sorted(channels(), key=lambda row: (row[0].value, row[1].value)):
        key = f"{kind.value}_{stream.value}"
        channel_defs[key] = {
            "address": f"{ROOT}/{{site}}/{kind.value}/{{device}}/{stream.value}",
            "messages": {model.__name__: {"$ref": f"#/components/messages/{model.__name__}"}},
            "parameters": {
                "site": {"description": "Site id (config key `site`)."},
                "device": {"description": "Device, service or load id."},
            },
        }
        action = "receive" if stream in _RECEIVED_BY_FLEET else "send"
        operations[f"{action}_{key}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{model.__name__}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ongrid topic contract",
            "version": "1",
            "description": (
                "Every topic is ongrid/{site}/{kind}/{device}/{stream}. Payloads are JSON with `v` (schema "
                "version) and `ts` (ISO-8601 UTC time the value was read). Sign convention: power into the "
                "house's AC bus is positive (grid import +, battery discharge +, PV +, load +). "
                "Generated by `make docs` from shared/messages.py and shared/contract.py; do not edit."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "broker": {"host": "localhost:1883", "protocol": "mqtt", "protocolVersion": "5",
                       "description": "Mosquitto; services use MQTT 5."},
        },
        "channels": channel_defs,
        "operations": operations,
        "components": {
            "messages": {model.__name__: _message(model) for model in m.ALL_MESSAGES},
            "schemas": _schemas(),
        },
    }


def render() -> str:
    return yaml.safe_dump(build(), sort_keys=False, allow_unicode=True, width=100)


_PUBLISHER = {
    Stream.COMMAND: "dispatcher (only it, by ACL)",
    Stream.SET: "people, Node-RED, Home Assistant",
}


def render_topics() -> str:
    rows = []
    for kind, stream, model in sorted(channels(), key=lambda row: (row[0].value, row[1].value)):
        who = _PUBLISHER.get(stream) or (
            "any service (last will)" if stream is Stream.AVAILABILITY else f"{kind.value} side"
        )
        rows.append(
            f"| `{ROOT}/{{site}}/{kind.value}/{{device}}/{stream.value}` | `{model.__name__}` | {model.QOS} "
            f"| {'yes' if model.RETAIN else 'no'} | {who} |"
        )
    return _TOPICS_INTRO + "\n".join(rows) + "\n"


OUTPUTS = ((TARGET, render), (TOPICS_MD, render_topics))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    status = 0
    for target, produce in OUTPUTS:
        text = produce()
        if args == ["--check"]:
            if not target.exists() or target.read_text() != text:
                print(f"{target} is stale: run `make docs`", file=sys.stderr)
                status = 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {target}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
