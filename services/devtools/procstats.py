"""CPU time and memory of a running process from /proc (Linux), for the benchmarks' JSON.

For the benchmarks and the load test, so it lives with the dev tools. CPU is user + system time
in seconds, so a percentage is ``cpu_s / wall_s * 100`` (100% = one core). Memory is ``VmRSS`` (now) and ``VmHWM``
(the peak resident set since the process started), in MB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (its own threads, not its children)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _TICKS


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of ``pid`` in MB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024.0
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


@dataclass
class CpuWindow:
    """CPU used by a process between ``start()`` and ``stop()``."""

    pid: int
    start_cpu_s: float = 0.0
    used_s: float = 0.0

    def start(self) -> None:
        self.start_cpu_s = cpu_seconds(self.pid)

    def stop(self) -> float:
        self.used_s = cpu_seconds(self.pid) - self.start_cpu_s
        return self.used_s


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return "unknown"
