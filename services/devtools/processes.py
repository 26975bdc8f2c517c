"""Services as child processes, for the demo, the tests and the benchmarks.

One way to start a service (``python -m <module> ARGS`` from the repository root, unbuffered, its
output in a log file), to stop one (SIGTERM, a grace period, then SIGKILL) and to wait until a
port listens; ``free_port`` is ``shared.ports.free_port`` (the simulator needs it at run time).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from shared.ports import free_port

__all__ = ["ROOT", "Child", "free_port", "stop_all", "stop_process", "wait_for_port"]

ROOT = Path(__file__).resolve().parents[2]


def stop_process(process: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``grace_s``."""
    stop_all([] if process is None else [process], grace_s)


def stop_all(processes: Iterable[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM to every process at once, then SIGKILL to those still running after ``grace_s``."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.1, deadline - time.monotonic()))
        if process.poll() is None:
            process.kill()
            process.wait(5)


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")


class Child:
    """``python -m module ARGS`` as a child process, stdout and stderr in ``log``.

    With ``pipe_stdout`` the process's stdout is a pipe instead (the simulator announces its
    endpoints there; see ``endpoints.read_endpoints``). ``start`` may be called again after the
    process ended: the same command, the log continued.
    """

    def __init__(
        self,
        module: str,
        *args: str,
        log: Path,
        pipe_stdout: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.module = module
        self.args = args
        self.log_path = log
        self.pipe_stdout = pipe_stdout
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, append: bool = False) -> subprocess.Popen[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab" if append else "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                stdout=subprocess.PIPE if self.pipe_stdout else log,
                stderr=log,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )
        return self.process

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.module} was never started"
        return self.process.pid

    @property
    def stdout(self) -> IO[bytes]:
        assert self.process is not None and self.process.stdout is not None, f"{self.module} has no stdout pipe"
        return self.process.stdout

    def returncode(self) -> int | None:
        """``None`` while running (or never started), else the exit status."""
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 20.0) -> int:
        """Send ``sig`` and wait up to ``timeout`` for the process to end; its exit status."""
        assert self.process is not None, f"{self.module} was never started"
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def stop(self, grace_s: float = 10.0) -> None:
        stop_process(self.process, grace_s)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def output(self, tail_chars: int | None = None) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text if tail_chars is None else text[-tail_chars:]
