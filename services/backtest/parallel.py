"""Run several policies at once, one process each (at most one per core), reporting progress.

Policies are independent of each other, so they run side by side; the heaviest (``planner``) starts
first so the others fill the remaining cores around it.

The planner's own replay is sequential (every decision depends on the state the previous one left),
and it is most of the time, so its year is also cut into spans that run side by side. A span
after the first starts ``warmup_days`` earlier from a guessed state (``Replay.guess``) and replays
the warm-up first; where it meets the span before, its state (``engine.Carry``: SoC, battery power,
the controller's memory, the plan in force, the export tally's state, ...) is compared with the
state the span before really left. Spans begin where the planner drops its kept HiGHS instances
(``engine.resets``), so with an equal state to the bit the span replays exactly as the whole run
did, and the merged result (``accounting.merge``) is the sequential one to rounding (each span
sums its own costs and energies, so the totals' last bits can differ). Otherwise the span is
replayed again from the true state, one after the other, so the result is always the sequential
one to rounding; the result says how many spans there were and how many were replayed again (``spans``,
``spans_rerun``). A battery that reaches its ceiling or its reserve in the warm-up has forgotten
where it started; one that stops short of the ceiling by less than a quantum's step keeps its
offset (docs/dispatcher.md: on the seed year 10 days meet at March to September's month starts).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from shared.energy.accounting import PolicyResult, merge

from .data import Series
from .engine import Carry, Replay, Setup, resets, same_state, simulate

__all__ = ["WARMUP_DAYS", "run_policies", "span_bounds"]

# Heaviest first: the planner solves a plan every replan interval; the rest are a loop each.
_COST = {"planner": 0, "self_use": 1, "perfect": 2, "none": 3}
WARMUP_DAYS = 10.0

Guess = Callable[[Replay], Carry]


def _one(series: Series, policy: str, setup: Setup, updates: queue.Queue[tuple[str, int]] | None) -> PolicyResult:
    def report(steps: int) -> None:
        if updates is not None:
            updates.put((policy, steps))

    return simulate(series, policy, setup, progress=report)


def _span(
    series: Series,
    setup: Setup,
    begin: int,
    end: int,
    warmup_steps: int,
    guess: Guess | None,
    updates: queue.Queue[tuple[str, int]] | None,
) -> tuple[PolicyResult, Carry, Carry]:
    """The planner from ``begin`` to ``end``: (its result, the state it started from, the state it
    left). The state it started from is the warm-up's (true only at the data's start)."""

    def report(steps: int) -> None:
        if updates is not None:
            updates.put(("planner", steps))

    replay = Replay(series, "planner", setup)
    first = max(0, begin - warmup_steps)
    start = replay.initial() if first == 0 else (guess or Replay.guess)(replay)
    if first < begin:
        start = replay.run(first, begin, start, PolicyResult("planner"))
    result = PolicyResult("planner")
    left = replay.run(begin, end, start, result, progress=report)
    return replay.finish(result, last=end == len(replay)), start, left


def span_bounds(series: Series, setup: Setup, spans: int) -> list[int]:
    """Where to cut the planner's replay into ``spans`` (fewer if the data is short): the reset
    points (``engine.resets``) nearest to equal shares of the data. [0, n] for one span."""
    n = len(series.times)
    if spans <= 1 or setup.loads:
        # Flexible loads plan from what they drew in the last days: a span would need that too.
        return [0, n]
    local = series.times.tz_convert(setup.timezone)
    points = resets(local.strftime("%Y-%m-%d").tolist())
    cuts: set[int] = set()
    for i in range(1, spans):
        if points:
            cuts.add(min(points, key=lambda p: abs(p - i * n // spans)))
    return [0, *sorted(cuts), n]


def run_policies(
    series: Series,
    policies: Sequence[str],
    setup: Setup,
    progress: Callable[[str, int], None] | None = None,
    workers: int | None = None,
    *,
    spans: int | None = None,
    warmup_days: float = WARMUP_DAYS,
    guess: Guess | None = None,
) -> dict[str, PolicyResult]:
    """Every policy's result, in the order asked; ``progress(policy, steps)`` as they advance.

    ``spans``: how many pieces the planner's data is cut into (default one per worker; 1 replays
    it whole); ``guess``: the state a span's warm-up starts from (default ``Replay.guess``).
    """
    cores = max(1, workers or os.cpu_count() or 1)
    if (cores == 1 or (len(policies) == 1 and "planner" not in policies)) and not spans:
        results: dict[str, PolicyResult] = {}
        for name in policies:

            def report(steps: int, name: str = name) -> None:
                if progress is not None:
                    progress(name, steps)

            results[name] = simulate(series, name, setup, progress=report)
        return results
    bounds = span_bounds(series, setup, spans or cores) if "planner" in policies else [0, len(series.times)]
    others = sorted((name for name in policies if name != "planner"), key=lambda name: _COST.get(name, -1))
    tasks = len(others) + (len(bounds) - 1 if "planner" in policies else 0)
    warmup_steps = round(warmup_days * 86400 / series.step_s)
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager:
        updates: queue.Queue[tuple[str, int]] = manager.Queue()
        with ProcessPoolExecutor(max_workers=min(cores, tasks), mp_context=context) as pool:
            # Heaviest first (the spans, then the other policies by cost): each core takes the
            # next task as it comes free, so the cheap ones fill in where the spans leave time
            # (on a year of minutes `self_use` alone is ~40 % of the planner).
            span_futures: list[Future[tuple[PolicyResult, Carry, Carry]]] = []
            if "planner" in policies:
                span_futures = [
                    pool.submit(_span, series, setup, begin, end, warmup_steps, guess, updates)
                    for begin, end in itertools.pairwise(bounds)
                ]
            futures = {name: pool.submit(_one, series, name, setup, updates) for name in others}
            pending: set[Future[object]] = {*futures.values(), *span_futures}  # type: ignore[arg-type]
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
            out = {name: future.result() for name, future in futures.items()}
    if "planner" in policies:
        out["planner"] = _stitch(series, setup, bounds, [f.result() for f in span_futures])
    return {name: out[name] for name in policies}


def _stitch(
    series: Series, setup: Setup, bounds: list[int], spans: list[tuple[PolicyResult, Carry, Carry]]
) -> PolicyResult:
    """The spans' results merged, each span after the first checked against the state the one
    before left, and replayed again from it where they differ."""
    parts = [spans[0][0]]
    left = spans[0][2]
    rerun = 0
    replay: Replay | None = None
    for i, (result, started, ended) in enumerate(spans[1:], start=1):
        if not same_state(started, left):
            replay = replay or Replay(series, "planner", setup)
            result = PolicyResult("planner")
            ended = replay.run(bounds[i], bounds[i + 1], left, result)
            replay.finish(result, last=bounds[i + 1] == len(replay))
            rerun += 1
        parts.append(result)
        left = ended
    merged = merge(parts) if len(parts) > 1 else parts[0]
    merged.spans, merged.spans_rerun = len(parts), rerun
    return merged
