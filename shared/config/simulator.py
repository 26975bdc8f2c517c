"""The simulated house (a scenario). Owned by services/simulator; the fleet ignores it."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from .base import Section


class SimulatorConfig(Section):
    """Placeholder shape until the simulator issue defines the scenario; see docs/simulator.md."""

    seed: int = 1
    speed: Annotated[float, Field(gt=0)] = 1.0
    start: str | None = None
    devices: tuple[dict[str, Any], ...] = ()
