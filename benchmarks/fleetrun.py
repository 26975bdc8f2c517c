"""The seed house with the real fleet, for the benchmarks that need every service running.

Builds a fleet config from ``deploy/scenarios/seed-house.yaml`` moved to free ports and a work
directory (``services.devtools.demo.relocate_scenario``), with the overrides a benchmark asks for, and
starts a private Mosquitto. The services are started as processes by ``services.devtools.demo.Fleet``,
exactly as ``ongrid demo`` does. Not a benchmark itself.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from services.devtools.demo import SCENARIO, relocate_scenario
from shared.ports import free_port

FLEET_SERVICES = ("inverter_bridge", "bms_bridge", "meter_bridge", "dispatcher", "recorder")


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it; dicts merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def scenario_config(
    workdir: Path, broker_port: int, overrides: dict[str, Any], *, bms_baudrate: int | None = None
) -> Path:
    """Write the relocated seed scenario with ``overrides`` to ``workdir/ongrid.yaml``.

    ``overrides`` may hold ``inverter``/``meter``/``battery`` dicts applied to the first device
    of that list, and any top-level section to merge. ``bms_baudrate`` sets the BMS line speed on
    both ends (bridge and simulated BMS), for runs so accelerated that a 9600-baud poll of every
    module would take minutes of simulated time.
    """
    data = yaml.safe_load(SCENARIO.read_text())
    if bms_baudrate is not None:
        data["batteries"][0]["transport"]["baudrate"] = bms_baudrate
        for device in data["simulator"]["devices"]:
            if device["role"] == "battery":
                device["listen"]["baudrate"] = bms_baudrate
    for section, key in (("inverters", "inverter"), ("meters", "meter"), ("batteries", "battery")):
        if key in overrides:
            data[section][0] = merge(data[section][0], overrides[key])
    sections = {k: v for k, v in overrides.items() if k not in ("inverter", "meter", "battery")}
    data = merge(data, sections)
    relocated = relocate_scenario(data, workdir, free_port, broker_port)
    path = workdir / "ongrid.yaml"
    path.write_text(yaml.safe_dump(relocated, sort_keys=False))
    return path


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: with few samples p99 is the largest)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]
