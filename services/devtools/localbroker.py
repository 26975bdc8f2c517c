"""A private Mosquitto on a free port: for the demo and the tests, never for production."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.ports import free_port

from .processes import stop_process, wait_for_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass
class Broker:
    """A mosquitto process on a free port; restartable on the same port (and persistence file)."""

    host: str
    port: int
    workdir: Path
    extra_conf: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def start(self) -> None:
        self.conf_path.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            # As deploy/mosquitto/mosquitto.conf: the recorder's session queue is bounded by bytes,
            # not by mosquitto's default 1000 messages.
            "max_queued_messages 10000000\n"
            "max_queued_bytes 268435456\n"
            f"log_dest file {self.workdir}/mosquitto.log\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            + self.extra_conf
        )
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf_path)], stderr=subprocess.PIPE)
        try:
            wait_for_port(self.host, self.port)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.process, grace_s=5)
        self.process = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


@contextlib.contextmanager
def running_broker(extra_conf: str = "") -> Iterator[Broker]:
    if not Path(MOSQUITTO).exists():
        raise RuntimeError("mosquitto is not installed: sudo apt-get install -y mosquitto")
    with tempfile.TemporaryDirectory(prefix="ongrid-mqtt-") as tmp:
        broker = Broker("127.0.0.1", free_port(), Path(tmp), extra_conf)
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()
