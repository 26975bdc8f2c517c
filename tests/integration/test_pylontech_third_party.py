"""The simulator's BMS server read by Pylontech clients the project did not write.

python-pylontech 0.3.3 (Frankkkkk) reads a plain pty; pylontech 0.1.3 (Tomcat42) toggles RTS,
which a pty refuses, so it reads the server's TCP endpoint through pyserial's ``socket://``. Both
share the import name ``pylontech``, so each lives in its own venv under var/venvs, made once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import venv
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.simulator.devices.pylontech import PtyEndpoint, TcpEndpoint, serve
from services.simulator.physics.battery import Battery, BatteryParams, WeakModule

REPO = Path(__file__).resolve().parents[2]
VENVS = REPO / "var" / "venvs"


def third_party_venv(name: str, requirement: str) -> Path:
    """A venv with ``requirement`` installed, made on first use; skip if PyPI is out of reach."""
    root = VENVS / name
    python = root / "bin" / "python"
    marker = root / ".installed"
    if marker.exists() and marker.read_text() == requirement:
        return python
    venv.create(root, with_pip=True, clear=True)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", requirement],
        capture_output=True,
        text=True,
        timeout=240,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot install {requirement} from PyPI: {result.stderr.strip()[-300:]}")
    marker.write_text(requirement)
    return python


@pytest.fixture(scope="session")
def python_pylontech() -> Path:
    return third_party_venv("python-pylontech", "python-pylontech==0.3.3")


@pytest.fixture(scope="session")
def pylontech_013() -> Path:
    return third_party_venv("pylontech-0.1.3", "pylontech==0.1.3")


def discharging_battery() -> Battery:
    battery = Battery(BatteryParams(modules=3, weak=WeakModule(index=2), initial_soc_pct=71.0, seed=7))
    battery.apply(1200.0, 60.0)
    return battery


@contextlib.asynccontextmanager
async def serving(battery: Battery, endpoint: Any, baudrate: int) -> AsyncIterator[str]:
    where: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(battery, endpoint, baudrate=baudrate, ready=where.set_result))
    try:
        yield await asyncio.wait_for(where, 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_client(python: Path, script: str, *args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        str(python), "-c", script, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    # The libraries print debug lines of their own; our JSON is the last line.
    return json.loads(out.decode().strip().splitlines()[-1])


PYTHON_PYLONTECH = r"""
import json, sys
from pylontech import Pylontech
p = Pylontech(sys.argv[1], baudrate=9600)
values = p.get_values()
single = p.get_values_single(3)
mgmt = p.get_management_info(2)
params = p.get_system_parameters()
sn = p.get_module_serial_number(4)
maker = p.get_manufacturer_info()
def module(m):
    return {"cells": list(m.CellVoltages), "bms_temp": m.AverageBMSTemperature,
            "temps": list(m.GroupedCellsTemperatures), "current": m.Current, "voltage": m.Voltage,
            "remaining": m.RemainingCapacity, "total": m.TotalCapacity, "cycles": m.CycleNumber}
print(json.dumps({
    "modules": [module(m) for m in values.Module],
    "soc": values.StateOfCharge,
    "single": module(single),
    "mgmt": {"charge_v": mgmt.ChargeVoltageLimit, "discharge_v": mgmt.DischargeVoltageLimit,
             "charge_a": mgmt.ChargeCurrentLimit, "discharge_a": mgmt.DischargeCurrentLimit,
             "charge_enable": mgmt.status.ChargeEnable, "discharge_enable": mgmt.status.DischargeEnable},
    "params": {"cell_high": params.CellHighVoltageLimit, "charge_high_c": params.ChargeHighTemperatureLimit,
               "discharge_low_c": params.DischargeLowTemperatureLimit,
               "discharge_limit_a": params.DischargeCurrentLimit},
    "serial": sn.ModuleSerialNumber.decode(),
    "maker": maker.ManufacturerName.decode().rstrip("\x00"),
    "device": maker.DeviceName.decode().rstrip("\x00"),
}))
"""


def check_module(got: dict[str, Any], want: Any) -> None:
    approx = pytest.approx
    assert got["cells"] == approx(list(want.cell_voltages_v), abs=0.00051)
    assert got["bms_temp"] == approx(want.bms_temp_c, abs=0.051)
    assert got["temps"] == approx(list(want.cell_temps_c), abs=0.051)
    # Pylontech's own sign: charge +. The model's: discharge +.
    assert got["current"] == approx(-want.current_a, abs=0.051)
    assert got["voltage"] == approx(want.voltage_v, abs=0.0011)
    assert got["remaining"] == approx(want.remaining_ah, abs=0.0011)
    assert got["total"] == approx(want.full_ah, abs=0.0011)
    assert got["cycles"] == want.cycles


async def test_python_pylontech_reads_the_simulated_stack(python_pylontech: Path, tmp_path: Path) -> None:
    battery = discharging_battery()
    truth = battery.snapshot()
    async with serving(battery, PtyEndpoint(str(tmp_path / "ttyBMS")), 9600) as device:
        got = await run_client(python_pylontech, PYTHON_PYLONTECH, device)
    assert len(got["modules"]) == 3
    for module, want in zip(got["modules"], truth.modules, strict=True):
        check_module(module, want)
    check_module(got["single"], truth.modules[1])
    assert got["soc"] * 100 == pytest.approx(truth.soc_pct, abs=0.02)
    first = truth.modules[0]
    assert got["mgmt"] == {
        "charge_v": pytest.approx(first.charge_voltage_limit_v),
        "discharge_v": pytest.approx(first.discharge_voltage_limit_v),
        "charge_a": pytest.approx(first.charge_current_limit_a, abs=0.051),
        "discharge_a": pytest.approx(first.discharge_current_limit_a, abs=0.051),
        "charge_enable": first.charge_enabled,
        "discharge_enable": first.discharge_enabled,
    }
    assert got["params"] == {
        "cell_high": 3.65,
        "charge_high_c": 50.0,
        "discharge_low_c": -10.0,
        "discharge_limit_a": 50.0,
    }
    assert got["serial"] == truth.modules[2].serial
    assert (got["maker"], got["device"]) == ("PYLON", "US2000B")


PYLONTECH_013 = r"""
import json, sys
from pylontech import PylontechStack
stack = PylontechStack(sys.argv[1], baud=115200, manualBattcountLimit=int(sys.argv[2]))
data = stack.update()
print(json.dumps({
    "serials": data["SerialNumbers"],
    "analog": [{"cells": a["CellVoltages"], "temps": a["Temperatures"], "current": a["Current"],
                "voltage": a["Voltage"], "remaining": a["RemainCapacity"],
                "total": a["ModuleTotalCapacity"], "cycles": a["CycleNumber"]}
               for a in data["AnaloglList"]],
    "mgmt": [{"charge_a": m["ChargeCurrent"], "discharge_a": m["DischargeCurrent"],
              "charge_enable": m["StatusChargeEnable"]} for m in data["ChargeDischargeManagementList"]],
    "alarms": [{"cells": a["CellAlarm"], "temps": a["TemperatureAlarm"]} for a in data["AlarmInfoList"]],
    "power_w": data["Calculated"]["Power_W"],
    "remain_pct": data["Calculated"]["Remain_Percent"],
}))
"""


async def test_pylontech_013_polls_the_simulated_stack_over_tcp(pylontech_013: Path) -> None:
    battery = discharging_battery()
    truth = battery.snapshot()
    async with serving(battery, TcpEndpoint("127.0.0.1", 0), 115200) as address:
        got = await run_client(pylontech_013, PYLONTECH_013, f"socket://{address}", "3")
    assert got["serials"] == [m.serial for m in truth.modules]
    for analog, want in zip(got["analog"], truth.modules, strict=True):
        check_module(
            {**analog, "bms_temp": analog["temps"][0], "temps": analog["temps"][1:]},
            want,
        )
    for mgmt, want in zip(got["mgmt"], truth.modules, strict=True):
        assert mgmt["charge_a"] == pytest.approx(want.charge_current_limit_a, abs=0.051)
        assert mgmt["discharge_a"] == pytest.approx(want.discharge_current_limit_a, abs=0.051)
        assert mgmt["charge_enable"] is want.charge_enabled
    for alarms in got["alarms"]:
        assert set(alarms["cells"]) == {"Ok"} and set(alarms["temps"]) == {"Ok"}
    # Its stack power is V*I with Pylontech's sign (charge +): discharging reads negative.
    assert got["power_w"] == pytest.approx(sum(m.voltage_v * -m.current_a for m in truth.modules), rel=0.01)
    assert got["remain_pct"] == round(truth.soc_pct)
