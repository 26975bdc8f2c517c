"""`ongrid demo`, shortened: the whole fleet on the simulated house, ending in a report."""

import subprocess
import sys
from pathlib import Path


def test_demo_runs_the_fleet_and_writes_a_report(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services", "demo", "--hours", "2", "--speed", "600", "--plain",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for service in ("inverter-bridge", "bms-bridge", "meter-bridge", "dispatcher", "recorder", "simulator"):
        assert service in result.stdout
    assert "offline" not in result.stdout
    assert "exited early" not in result.stdout
    assert (tmp_path / "report" / "index.html").exists()
    assert list((tmp_path / "report").glob("*.png"))
