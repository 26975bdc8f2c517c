"""Pure: which flexible-load switches to flip after a decision, and the ``LoadState`` to publish.

A switch is published only when the wanted state differs from the last one published (or nothing
was published yet), so a Tasmota relay is not told ``ON`` on every meter tick. A decision that does
not mention a load (the dispatcher is not commanding) leaves it as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from shared.config.loads import DiverterLoad, EvLoad, HeatPumpLoad
from shared.messages import LoadState

__all__ = ["Switch", "switches"]

Load = DiverterLoad | HeatPumpLoad | EvLoad


@dataclass(frozen=True)
class Switch:
    load: Load
    on: bool
    state: LoadState

    @property
    def payload(self) -> str:
        return self.load.payload_on if self.on else self.load.payload_off


def switches(
    loads: tuple[Load, ...],
    wanted: Mapping[str, bool],
    published: Mapping[str, bool],
    now: datetime,
    *,
    power_w: Mapping[str, float] | None = None,
    budget_left_wh: Mapping[str, float] | None = None,
    reason: str | None = None,
    reasons: Mapping[str, str] | None = None,
) -> list[Switch]:
    """The switches to flip. ``reason``: the decision's; ``reasons``: a load's own, where its own
    rule decided (a heat pump's run window, budget or floor), which then wins."""
    out: list[Switch] = []
    for load in loads:
        if load.id not in wanted:
            continue
        on = bool(wanted[load.id])
        if published.get(load.id) == on:
            continue
        state = LoadState(
            ts=now,
            load=load.id,
            kind=load.kind,
            on=on,
            power_w=(power_w or {}).get(load.id),
            reason=(reasons or {}).get(load.id, reason),
            battery_budget_left_wh=(budget_left_wh or {}).get(load.id),
        )
        out.append(Switch(load, on, state))
    return out
