"""Serial ports without hardware: a socat pty pair, one end for the bridge, one for the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

SIM_SUFFIX = ".sim"


@dataclass
class PtyPair:
    """``device`` is what the bridge opens (the scenario's path); ``sim_end`` is what we serve on."""

    device: Path
    sim_end: Path
    process: asyncio.subprocess.Process

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 5)
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        for link in (self.device, self.sim_end):
            with contextlib.suppress(FileNotFoundError):
                if link.is_symlink():
                    link.unlink()


async def open_pty_pair(device: str | Path, timeout_s: float = 5.0) -> PtyPair:
    """Start ``socat`` linking ``device`` and ``device.sim``; returns once both links exist."""
    socat = shutil.which("socat")
    if socat is None:
        raise RuntimeError("socat is not installed (apt-get install socat); it makes the serial pty pairs")
    bridge_end = Path(device)
    sim_end = Path(f"{device}{SIM_SUFFIX}")
    bridge_end.parent.mkdir(parents=True, exist_ok=True)
    for link in (bridge_end, sim_end):
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            raise RuntimeError(f"{link} exists and is not a pty link left by the simulator; not replacing it")
    process = await asyncio.create_subprocess_exec(
        socat,
        f"pty,raw,echo=0,link={bridge_end}",
        f"pty,raw,echo=0,link={sim_end}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not _both_exist(bridge_end, sim_end):
        if process.returncode is not None:
            err = (await process.stderr.read()).decode() if process.stderr else ""
            raise RuntimeError(f"socat for {device} exited with {process.returncode}: {err.strip()}")
        if loop.time() > deadline:
            process.kill()
            raise RuntimeError(f"socat did not create {bridge_end} and {sim_end} within {timeout_s} s")
        await asyncio.sleep(0.02)
    return PtyPair(bridge_end, sim_end, process)


def _both_exist(a: Path, b: Path) -> bool:
    return a.exists() and b.exists()
