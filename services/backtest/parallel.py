"""Run several policies at once, one process each (at most one per core), reporting progress.

Each policy's replay is sequential (every decision depends on the battery state the previous one
left), but policies are independent of each other, so they run side by side. The heaviest
(``planner``) starts first so the others fill the remaining cores around it.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from shared.energy.accounting import PolicyResult

from .data import Series
from .engine import Setup, simulate

__all__ = ["run_policies"]

# Heaviest first: the planner solves a plan every replan interval; the rest are a loop each.
_COST = {"planner": 0, "self_use": 1, "perfect": 2, "none": 3}


def _one(series: Series, policy: str, setup: Setup, updates: queue.Queue[tuple[str, int]] | None) -> PolicyResult:
    def report(steps: int) -> None:
        if updates is not None:
            updates.put((policy, steps))

    return simulate(series, policy, setup, progress=report)


def run_policies(
    series: Series,
    policies: Sequence[str],
    setup: Setup,
    progress: Callable[[str, int], None] | None = None,
    workers: int | None = None,
) -> dict[str, PolicyResult]:
    """Every policy's result, in the order asked; ``progress(policy, steps)`` as they advance."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(policies)))
    if workers == 1:
        results: dict[str, PolicyResult] = {}
        for name in policies:

            def report(steps: int, name: str = name) -> None:
                if progress is not None:
                    progress(name, steps)

            results[name] = simulate(series, name, setup, progress=report)
        return results
    order = sorted(policies, key=lambda name: _COST.get(name, -1))
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager:
        updates: queue.Queue[tuple[str, int]] = manager.Queue()
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures: dict[str, Future[PolicyResult]] = {
                name: pool.submit(_one, series, name, setup, updates) for name in order
            }
            pending = set(futures.values())
            while pending:
                try:
                    name, steps = updates.get(timeout=0.1)
                    if progress is not None:
                        progress(name, steps)
                except queue.Empty:
                    pass
                pending = {f for f in pending if not f.done()}
            while True:  # what arrived after the last future finished
                try:
                    name, steps = updates.get_nowait()
                except queue.Empty:
                    break
                if progress is not None:
                    progress(name, steps)
            return {name: futures[name].result() for name in policies}
