"""Run every benchmark and collect their JSON into ``var/bench/results.json`` (``make bench``).

Each benchmark is a script printing one JSON object; this runs them one after another (never in
parallel: they measure time and CPU on a shared machine), records the command, its wall time and
its JSON, and the machine: CPU model, cores, Python, date. A benchmark that fails is recorded with
its exit status and the end of its stderr, and the others still run; the exit status is 1 then.

``--quick`` runs reduced sizes (a few minutes in all instead of about an hour):

| benchmark | full | --quick |
|---|---|---|
| sim_year | a year at 1-minute steps | same |
| planner | 48 h plans, both tariffs | same |
| backtest_year | 365 days, 30-min and 1-min data | 30 days, 30-min data only |
| recorder_throughput | 100,000 points, 10-min backlog, MQTT burst 100,000 | 20,000, 1-min backlog, burst 30,000 |
| register_coalescing | 2,000 polls | 500 polls |
| bridge_cpu | 1,000 polls | 200 polls |
| writes_per_day | 24 simulated hours at 120x | 6 simulated hours at 120x |
| control_latency | 30 load steps | 10 load steps |
| scale_out | 1,000 sites x 60 s | 200 sites x 20 s |

Usage: ``python benchmarks/run_all.py [--quick] [--only NAME ...] [--out var/bench/results.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.devtools.procstats import cpu_model

ROOT = Path(__file__).resolve().parents[1]

# name -> (full arguments, quick arguments); the order is the order they run in.
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "sim_year": ([], []),
    "planner": ([], []),
    "backtest_year": ([], ["--days", "30", "--skip-minutely"]),
    "recorder_throughput": ([], ["--points", "20000", "--backlog-minutes", "1", "--mqtt-messages", "30000"]),
    "register_coalescing": ([], ["--polls", "500"]),
    "bridge_cpu": ([], ["--polls", "200"]),
    "writes_per_day": ([], ["--hours", "6"]),
    "control_latency": ([], ["--samples", "10"]),
    "scale_out": ([], ["--sites", "200", "--seconds", "20"]),
}


def machine() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def parse_json(stdout: str) -> Any:
    """The script's JSON: the whole output, or else its last line that is a JSON object."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        for line in reversed(stdout.strip().splitlines()):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object in the output")


def run_one(name: str, args: list[str], timeout_s: float) -> dict[str, Any]:
    script = ROOT / "benchmarks" / f"{name}.py"
    command = [sys.executable, str(script.relative_to(ROOT)), *args]
    entry: dict[str, Any] = {"command": " ".join(["python", *command[1:]])}
    if not script.exists():
        return {**entry, "ok": False, "error": f"{script.relative_to(ROOT)} does not exist"}
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {**entry, "ok": False, "error": f"timed out after {timeout_s:.0f} s"}
    entry["wall_s"] = round(time.monotonic() - started, 1)
    if done.returncode != 0:
        return {**entry, "ok": False, "error": f"exit status {done.returncode}", "stderr": done.stderr[-2000:]}
    try:
        entry["result"] = parse_json(done.stdout)
    except ValueError as exc:
        return {**entry, "ok": False, "error": str(exc), "stdout": done.stdout[-2000:]}
    entry["ok"] = True
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (see the table in the docstring)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run just these")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "results.json")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per benchmark, seconds")
    args = parser.parse_args()
    names = [name for name in BENCHMARKS if not args.only or name in args.only]
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "benchmarks": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        full, quick = BENCHMARKS[name]
        print(f"== {name}", file=sys.stderr, flush=True)
        entry = run_one(name, quick if args.quick else full, args.timeout)
        results["benchmarks"][name] = entry
        if not entry["ok"]:
            failed.append(name)
            print(f"   FAILED: {entry['error']}", file=sys.stderr, flush=True)
        else:
            print(f"   ok in {entry['wall_s']} s", file=sys.stderr, flush=True)
        # Written after each benchmark, so a long run interrupted keeps what it measured.
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"results in {args.out}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
