"""What every suite shares, written once: a private Mosquitto, free ports, services as child
processes, the simulator's endpoint lines and a linked pty pair.

The process, port and endpoint helpers are ``services.devtools``'s (the demo and the benchmarks use
the same ones); ``bridge_rig``, ``fault_fleet``, ``sim_fleet`` and ``compose_local`` are the
larger rigs of the bridge, fault, end-to-end and deployment suites. Tests import from here, never
from another test module.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from services.devtools.endpoints import endpoint_map, read_endpoints
from services.devtools.localbroker import MOSQUITTO, Broker, running_broker
from services.devtools.processes import ROOT, Child, stop_all, stop_process, wait_for_port
from shared.ports import free_port

__all__ = [
    "MOSQUITTO",
    "REPO",
    "SOCAT",
    "Broker",
    "Child",
    "endpoint_map",
    "free_port",
    "pty_pair",
    "read_endpoints",
    "running_broker",
    "stop_all",
    "stop_process",
    "wait_for_port",
]

REPO = ROOT
SOCAT = shutil.which("socat")


@contextlib.contextmanager
def pty_pair(a: Path, b: Path) -> Iterator[tuple[str, str]]:
    """Two linked ptys at ``a`` and ``b`` (socat), as a USB-RS485 adapter and its device would be."""
    if SOCAT is None:
        raise RuntimeError("socat is not installed: sudo apt-get install -y socat")
    process = subprocess.Popen(
        [SOCAT, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while not (a.exists() and b.exists()):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("socat did not create the pty pair")
            time.sleep(0.02)
        yield str(a), str(b)
    finally:
        stop_process(process, grace_s=5)
