"""Register-level golden tests of the simulated devices, and the pure parts of the wire code."""

from __future__ import annotations

import struct
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from services.simulator.devices.eastron import meter_values
from services.simulator.devices.faults import DeviceFaults, FaultySource, corrupt_crc, trace_packet
from services.simulator.devices.sofar import custom_handler, inverter_values
from services.simulator.physics.house import House, HouseParams, MeterSpec
from services.simulator.physics.inverter import Control, PassiveMode, RunningState
from services.simulator.physics.meters import PERFECT
from services.simulator.servers.modbus import MapSource, ServeError
from shared.registers import decode_image, encode, load_map

LONDON = ZoneInfo("Europe/London")


@pytest.fixture
def house() -> House:
    params = HouseParams(inverter_ct=PERFECT, meters=(("grid", MeterSpec("grid", PERFECT)),))
    h = House(params, datetime(2026, 6, 1, 12, tzinfo=LONDON))
    h.battery.energy_wh = h.battery.full_wh * 0.55
    h.battery.power_w = -1200.0
    h.flows.battery_w = -1200.0
    h.flows.pv_w = 2000.0
    h._inverter_grid_w = 350.0
    h.inverter.running = RunningState.CHARGING
    return h


def test_sofar_realtime_registers_golden(house: House) -> None:
    image = encode(load_map("sofar_me3000sp"), inverter_values(house, "SE1ES012345678"))
    hr = image[3]
    assert hr[0x0200] == 2  # charging
    assert hr[0x020D] == 120  # 1.20 kW, vendor sign: + charge
    assert hr[0x0210] == 55  # SoC %
    assert hr[0x0212] == (-35) & 0xFFFF  # importing 350 W: vendor sign + export, so -0.35 kW
    assert hr[0x0213] == 115  # load 2000 + 350 - 1200 = 1150 W
    assert hr[0x0214] == (-120) & 0xFFFF  # inverter AC power: into the battery
    assert hr[0x0215] == 200  # PV 2.00 kW
    # Charging current is negative in our sign and positive (0.01 A) on the Sofar wire.
    assert hr[0x020F] == round(-house.battery.snapshot().current_a * 100) > 0
    ir = image[4]
    assert ir[0x10B0] == 1  # pylon
    serial = b"".join(ir[0x2001 + i].to_bytes(2, "big") for i in range(7))
    assert serial == b"SE1ES012345678"


def test_sofar_values_roundtrip_through_the_map(house: House) -> None:
    regmap = load_map("sofar_me3000sp")
    values = inverter_values(house, "SE1ES012345678")
    decoded = decode_image(regmap, encode(regmap, values))
    assert decoded["battery_power_w"] == pytest.approx(-1200)
    assert decoded["grid_power_w"] == pytest.approx(350)
    assert decoded["running_state"] == "charging"


def test_sofar_passive_hook(house: House) -> None:
    handle = custom_handler(house)
    status = handle(1, 0x42, 0x0102, 1000)  # charge 1000 W
    assert status & 0xFF == 0
    assert status >> 8 & 0x03 == 0x03  # charge and discharge enabled
    assert house.inverter.control is Control.PASSIVE and house.inverter.passive_mode is PassiveMode.CHARGE
    assert handle(1, 0x42, 0x0101, 5000) & 0xFF == 4  # invalid data
    assert handle(1, 0x42, 0x0100, 0x1234) & 0xFF == 4  # standby needs 0x5555
    assert handle(1, 0x42, 0x0103, (-500) & 0xFFFF) & 0xFF == 0
    assert house.inverter.passive_value_w == -500
    assert handle(1, 0x42, 0x0104, 0) & 0xFF == 1  # no such passive register
    house.now_s += 30
    assert handle(1, 0x49, 0x2201, 0x2202) == 0
    assert house.inverter.last_contact_s == house.now_s


def test_eastron_sdm120_float_registers_golden(house: House) -> None:
    house.meters["grid"].integrate(1234.5, 3600.0)
    image = encode(load_map("eastron_sdm120"), meter_values(house, "grid", "eastron_sdm120"))
    ir = image[4]
    assert [ir[0x000C], ir[0x000D]] == [0x449A, 0x5000]  # 1234.5 W as big-endian float32
    kwh = struct.unpack(">f", struct.pack(">HH", ir[0x0048], ir[0x0049]))[0]
    assert kwh == pytest.approx(1.2345, rel=1e-6)


def test_eastron_sdm630_puts_a_single_phase_house_on_l1(house: House) -> None:
    house.meters["grid"].integrate(-800.0, 60.0)
    values = meter_values(house, "grid", "eastron_sdm630")
    decoded = decode_image(load_map("eastron_sdm630"), encode(load_map("eastron_sdm630"), values))
    assert decoded["l1_power_w"] == pytest.approx(-800, abs=0.01)
    assert decoded["l2_power_w"] == 0


# ---- faults --------------------------------------------------------------------------------------


def test_faults_validate_and_apply(house: House) -> None:
    faults = DeviceFaults()
    with pytest.raises(ValueError, match="unknown fault 'slow'"):
        faults.update({"slow": True})
    with pytest.raises(ValueError, match="exception"):
        faults.update({"exception": 0})
    meter = MapSource(load_map("eastron_sdm120"), lambda: meter_values(house, "grid", "eastron_sdm120"))
    source = FaultySource(meter, faults)
    assert source.read(4, 0, 2) != [0xFFFF, 0xFFFF]
    faults.update({"out_of_range": True})
    assert source.read(4, 0, 2) == [0xFFFF, 0xFFFF]
    faults.update({"exception": 4})
    with pytest.raises(ServeError):
        source.read(4, 0, 2)
    hook = trace_packet(faults)
    frame = bytes.fromhex("010400000002 71CB".replace(" ", ""))
    assert hook(True, frame) == frame
    faults.update({"crc": True})
    assert hook(True, frame) == corrupt_crc(frame) != frame
    assert hook(False, frame) == frame  # requests are never altered
    faults.update({"silent": True})
    assert hook(True, frame) == b""


# Solarman V5 framing is the shared emulator's (services/simulator/servers/solarman.py), tested in
# tests/unit/test_modbus_framing.py; the simulator's logger is exercised end to end in the
# integration tests.
