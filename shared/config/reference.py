"""Write docs/configuration.md from the config models, so the reference can never disagree with
what the loader accepts. ``make docs`` regenerates it; a test fails when it is stale."""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from shared.config import OngridConfig

TARGET = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

INTRO = """# Configuration reference

ongrid reads one YAML file: `--config FILE`, else `$ONGRID_CONFIG`, else `./ongrid.yaml` when it
exists, else built-in defaults. A documented example is `deploy/ongrid.example.yaml`; the simulated
seed house is `deploy/scenarios/seed-house.yaml` (a scenario file is also a complete fleet config).

* **Unknown keys are errors.** A typo stops the service at start with the file and the key's path, e.g.
  `invalid configuration in ongrid.yaml: mqtt.prot: unknown key (got 1883)`; a bad value names the key
  and the value given. So does what a service finds wrong before it starts (an unknown register map, a
  transport that cannot carry the device's protocol, a tariff file it cannot read, a port the simulator
  cannot listen on), e.g. `error: ongrid.yaml: inverters.0.model: map eastron_sdm120 is a meter map (got
  'eastron_sdm120')`, and a YAML syntax error names the file, line and column. Each is one message, no
  traceback; the service exits with status 2 and does not start half-configured.
* **Environment overrides** any key: `ONGRID_` + the path in capitals with `__` between levels, e.g.
  `ONGRID_MQTT__HOST=broker`, `ONGRID_MQTT__PASSWORD=...`, `ONGRID_SITE=attic`. The environment wins over
  the file; this is how docker-compose passes hostnames and secrets.
* Times of day are local to `tariff.timezone`; timestamps in payloads are always UTC.

This page is generated from the models in `shared/config/` by `make docs`; do not edit it by hand.
"""

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"

# The examples, first one first: the commonest home is the one a new user should see first.
EXAMPLE_FILES: tuple[tuple[str, str], ...] = (
    ("A battery on CAN to the inverter only", "can-only-home.yaml"),
)

EXAMPLES_TAIL = """
### With the battery's BMS on RS485

Give the battery a `transport` (its RS485 link, a USB adapter or an RS485-Ethernet converter) and
run the bms-bridge: the dispatcher and the inverter bridge then use the BMS's own SoC and its live
charge/discharge limits, and per-module and per-cell readings are published.

```yaml
batteries:
  - id: battery1
    model: pylontech_rs485
    transport: {kind: serial, device: /dev/ttyUSB2, baudrate: 9600}   # or {kind: tcp_serial, host, port}
    modules: 4
    usable_kwh: 9.6
```

The complete, commented example with every section (meters, loads, recorder, InfluxDB) is
`deploy/ongrid.example.yaml`; the simulated seed house is `deploy/scenarios/seed-house.yaml`.
"""


def examples() -> str:
    out = ["\n## Examples\n"]
    for title, name in EXAMPLE_FILES:
        text = (EXAMPLES / name).read_text().rstrip()
        out.append(f"### {title}\n\n`deploy/examples/{name}`:\n\n```yaml\n{text}\n```\n")
    out.append(EXAMPLES_TAIL)
    return "\n".join(out)


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(get_args(annotation)[0])
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(annotation))
    if origin in (tuple, list):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is PydanticUndefined:
        return ""
    if isinstance(value, BaseModel):
        return "see section"
    if hasattr(value, "get_secret_value"):
        return "(secret)"
    if value == ():
        return "`[]`"
    return f"`{value}`"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found.append(annotation)
    for arg in get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _constraints(field: FieldInfo) -> str:
    bits = []
    for item in field.metadata:
        for name, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, name, None)
            if value is not None:
                bits.append(f"{symbol} {value}")
        pattern = getattr(item, "pattern", None)
        if pattern:
            bits.append(f"pattern `{pattern}`".replace("|", "\\|"))
    return ", ".join(bits)


def _section(model: type[BaseModel], seen: set[type[BaseModel]], out: list[str]) -> None:
    if model in seen:
        return
    seen.add(model)
    out.append(f"\n## {model.__name__}\n")
    doc = (model.__doc__ or "").strip()
    if doc and not doc.startswith(("Usage docs", "Base class")):
        out.append(doc + "\n")
    out.append("| key | type | default | meaning |\n|---|---|---|---|")
    nested: list[type[BaseModel]] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        meaning = (field.description or "").replace("|", "\\|")
        limits = _constraints(field)
        if limits:
            meaning = f"{meaning} ({limits})" if meaning else f"({limits})"
        out.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {meaning} |")
        nested.extend(_models_in(field.annotation))
    for child in nested:
        _section(child, seen, out)


def render() -> str:
    out = [INTRO, examples()]
    _section(OngridConfig, set(), out)
    return "\n".join(out).replace("\n## OngridConfig\n", "\n## OngridConfig (top level)\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if args == ["--check"]:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
