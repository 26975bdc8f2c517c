"""Throwaway database servers on free ports: InfluxDB 1.x (``influxd``) and VictoriaMetrics.

For the integration tests, the throughput benchmark and a local demo: each server gets its own
temporary directory and config, binds only to 127.0.0.1 (the RPC/backup port too), sends no usage
reports, and is stopped by the context manager. ``stop()``/``start()`` keep the data directory,
so a test can take the database away mid-run and bring it back.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shared.ports import free_port

from .processes import stop_process

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"
VICTORIA = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 500:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not answering after {timeout} s: {last}")


@dataclass
class Server:
    name: str
    workdir: Path
    port: int
    argv: list[str]
    health: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.workdir / f"{self.name}.log", "ab")
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        try:
            _wait_http(self.url + self.health, timeout)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process(self.process, grace_s=15)
        self.process = None

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / f"{self.name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def influxd_available() -> bool:
    return Path(INFLUXD).exists()


def victoria_available() -> bool:
    return Path(VICTORIA).exists()


def influxd_config(workdir: Path, http_port: int, rpc_port: int, auth: bool = False) -> str:
    return f"""
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{workdir}/meta"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "10s"

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {"true" if auth else "false"}
  log-enabled = false
  max-body-size = 0

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[logging]
  level = "warn"
"""


@contextlib.contextmanager
def running_influxd(auth: bool = False) -> Iterator[Server]:
    """An InfluxDB 1.x on a free port, for as long as the ``with`` lasts (``auth``: users required)."""
    if not influxd_available():
        raise RuntimeError("influxd is not installed (apt-get install influxdb)")
    with tempfile.TemporaryDirectory(prefix="ongrid-influx-") as tmp:
        workdir = Path(tmp)
        port, rpc = free_port(), free_port()
        conf = workdir / "influxdb.conf"
        conf.write_text(influxd_config(workdir, port, rpc, auth))
        server = Server("influxd", workdir, port, [INFLUXD, "-config", str(conf)], "/ping")
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def running_victoria() -> Iterator[Server]:
    """VictoriaMetrics on a free port: accepts InfluxDB line protocol on ``/api/v2/write``."""
    if not victoria_available():
        raise RuntimeError("victoria-metrics is not installed (apt-get install victoria-metrics)")
    with tempfile.TemporaryDirectory(prefix="ongrid-vm-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        argv = [
            VICTORIA,
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={workdir}/data",
            "-retentionPeriod=100y",
            "-search.disableCache",
            "-loggerLevel=ERROR",
        ]
        server = Server("victoria-metrics", workdir, port, argv, "/health")
        server.start()
        try:
            yield server
        finally:
            server.stop()
