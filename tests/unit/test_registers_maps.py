"""Every shipped map loads, golden register fixtures decode to hand-derived values, errors name the field."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.messages import InverterState, MeterRole, MeterState, RunningState
from shared.registers import (
    EncodeError,
    MapError,
    RegisterDecodeError,
    available_maps,
    decode,
    decode_image,
    encode,
    encode_write,
    load_map,
    load_map_file,
    plan_reads,
    to_inverter_state,
    to_meter_state,
)

TS = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

# Sofar ME3000SP real-time registers, values worked out by hand from the vendor PDF's scales:
SOFAR_GOLDEN_REGISTERS = {
    0x0200: 2,  # running state 2 = Charging
    0x0201: 0x0001,  # fault list 1 bit 0 -> ID01
    0x0203: 0x8000,  # fault list 3 bit 15 -> ID48
    0x0206: 2412,  # grid voltage 241.2 V (0.1 V)
    0x0207: 0xFE0C,  # grid current -5.00 A (S16 -500, 0.01 A)
    0x020C: 4998,  # 49.98 Hz
    0x020D: 120,  # +1.20 kW = charging 1200 W in Sofar's sign -> -1200 W ours
    0x020E: 523,  # 52.3 V
    0x020F: 0xFDCE,  # -5.62 A vendor (discharging) -> +5.62 A ours
    0x0210: 67,  # 67 %
    0x0211: 0xFFFD,  # -3 degC
    0x0212: 0xFF38,  # -2.00 kW vendor = importing -> +2000 W ours
    0x0213: 215,  # load 2.15 kW
    0x0214: 0xFF88,  # -1.20 kW inverter AC (absorbing while charging)
    0x0215: 35,  # PV 0.35 kW
    0x0216: 0,
    0x0217: 0,
    0x0218: 1234,  # 12.34 kWh -> 12340 Wh
    0x0219: 5,
    0x021A: 801,
    0x021B: 1999,
    0x021C: 0x0001,  # total generation U32 hi/lo 0x0001_0002 = 65538 kWh
    0x021D: 0x0002,
    0x021E: 0,
    0x021F: 321,
    0x0220: 0,
    0x0221: 4567,
    0x0222: 0,
    0x0223: 9876,
    0x022B: 0,
    0x022C: 312,
    0x0238: 41,
    0x0239: 0xFFFF,  # -1 degC
    0x023A: 3,
    0x023D: 0,
    0x023E: 0x0004,  # battery fault 2, bit 2 (no name in the PDF)
    0x023F: 0,
    0x0240: 0,
    0x0241: 0,
    0x0243: 95,
    0x0244: 0,
    0x0245: 1500,
}

SOFAR_GOLDEN_VALUES = {
    "running_state": "charging",
    "grid_voltage_v": 241.2,
    "grid_current_a": -5.0,
    "grid_frequency_hz": 49.98,
    "battery_power_w": -1200,
    "battery_voltage_v": 52.3,
    "battery_current_a": 5.62,
    "battery_soc_pct": 67,
    "battery_temp_c": -3,
    "grid_power_w": 2000,
    "load_power_w": 2150,
    "inverter_power_w": -1200,
    "pv_power_w": 350,
    "pv_energy_today_wh": 12340,
    "export_energy_today_wh": 50,
    "import_energy_today_wh": 8010,
    "load_energy_today_wh": 19990,
    "pv_energy_total_wh": 65_538_000,
    "export_energy_total_wh": 321_000,
    "import_energy_total_wh": 4_567_000,
    "load_energy_total_wh": 9_876_000,
    "battery_cycles": 312,
    "inverter_temp_c": 41,
    "heatsink_temp_c": -1,
    "generation_time_today_min": 95,
    "generation_time_total_h": 1500,
    "fault_1": ("ID01",),
    "fault_3": ("ID48",),
    "battery_fault_2": ("battery_fault_2_bit2",),
}


def _sofar_realtime_values() -> dict[str, object]:
    regmap = load_map("sofar_me3000sp")
    registers = {a: 0 for a in range(0x0200, 0x0246)} | SOFAR_GOLDEN_REGISTERS
    values: dict[str, object] = {}
    for block in plan_reads(regmap, [p for p in regmap.readable_points() if p.function == 3]):
        values.update(decode(regmap, block, [registers[a] for a in range(block.address, block.end)]))
    return values


def test_every_map_loads_and_plans() -> None:
    names = available_maps()
    assert {"sofar_me3000sp", "eastron_sdm120", "eastron_sdm630"} <= set(names)
    for name in names:
        regmap = load_map(name)
        assert regmap.name == name
        blocks = plan_reads(regmap)
        covered = [p.field for b in blocks for p in b.points]
        assert sorted(covered) == sorted(p.field for p in regmap.readable_points())


@pytest.mark.parametrize("name", available_maps())
def test_maps_carry_every_required_model_field(name: str) -> None:
    regmap = load_map(name)
    model = InverterState if regmap.kind == "inverter" else MeterState
    fields = {p.field for p in regmap.readable_points()}
    required = {n for n, f in model.model_fields.items() if f.is_required()} - {
        "ts",
        "device",
        "model",
        "role",
    }
    assert required <= fields, f"{name} lacks {required - fields}"


def test_sofar_golden_decode() -> None:
    values = _sofar_realtime_values()
    for field, expected in SOFAR_GOLDEN_VALUES.items():
        assert (
            values[field] == pytest.approx(expected)
            if isinstance(expected, float)
            else values[field] == expected
        ), field


def test_sofar_golden_to_inverter_state() -> None:
    regmap = load_map("sofar_me3000sp")
    state = to_inverter_state(regmap, _sofar_realtime_values(), device="inv1", ts=TS)
    assert state.running_state is RunningState.CHARGING
    assert state.battery_power_w == -1200
    assert state.grid_power_w == 2000
    assert state.battery_soc_pct == 67
    assert state.faults == ("ID01", "ID48", "battery_fault_2_bit2")
    assert state.model == "sofar_me3000sp"


def test_sofar_identity_block_decodes_strings() -> None:
    regmap = load_map("sofar_me3000sp")
    serial = b"SE1ES123456789"
    image = {
        4: {0x2000: 7} | {0x2001 + i: int.from_bytes(serial[2 * i : 2 * i + 2], "big") for i in range(7)}
    }
    image[4] |= {0x2008: int.from_bytes(b"V1", "big"), 0x2009: int.from_bytes(b"40", "big")}
    image[4] |= {0x200A: int.from_bytes(b"V2", "big"), 0x200B: 0}
    points = [
        regmap.point(f) for f in ("production_code", "serial_number", "software_version", "hardware_version")
    ]
    values = decode_image(regmap, image, points)
    assert values == {
        "production_code": 7,
        "serial_number": "SE1ES123456789",
        "software_version": "V140",
        "hardware_version": "V2",
    }


# SDM120 float32 registers (big-endian words), derived by hand from IEEE-754:
#   230.0 = 0x4366_0000, -1500.5 = 0xC4BB_9000, 1234.5 = 0x449A_5000, 0.5 = 0x3F00_0000, 50.0 = 0x4248_0000
SDM_GOLDEN = {
    0x0000: 0x4366,
    0x0001: 0x0000,
    0x000C: 0xC4BB,
    0x000D: 0x9000,
    0x0048: 0x449A,
    0x0049: 0x5000,
    0x001E: 0x3F00,
    0x001F: 0x0000,
    0x0046: 0x4248,
    0x0047: 0x0000,
}


def test_sdm120_golden_decode_to_meter_state() -> None:
    regmap = load_map("eastron_sdm120")
    registers = {a: 0 for a in range(0x0000, 0x0160)} | SDM_GOLDEN
    values = {}
    for block in plan_reads(regmap):
        values.update(decode(regmap, block, [registers[a] for a in range(block.address, block.end)]))
    assert values["voltage_v"] == 230.0
    assert values["power_w"] == -1500.5
    assert values["import_energy_wh"] == 1_234_500.0
    assert values["power_factor"] == 0.5
    assert values["frequency_hz"] == 50.0
    state = to_meter_state(regmap, values, device="grid", ts=TS, role=MeterRole.GRID)
    assert (state.power_w, state.import_energy_wh, state.export_energy_wh) == (-1500.5, 1_234_500.0, 0.0)
    flipped = to_meter_state(regmap, values, device="grid", ts=TS, role=MeterRole.GRID, invert=True)
    assert (flipped.power_w, flipped.import_energy_wh, flipped.export_energy_wh) == (1500.5, 0.0, 1_234_500.0)


def test_eastron_reads_are_even() -> None:
    for name in ("eastron_sdm120", "eastron_sdm630"):
        for block in plan_reads(load_map(name)):
            assert block.address % 2 == 0 and block.count % 2 == 0


def test_out_of_range_raw_value_names_field_address_and_value() -> None:
    regmap = load_map("sofar_me3000sp")
    registers = {a: 0 for a in range(0x0200, 0x0246)} | SOFAR_GOLDEN_REGISTERS | {0x0210: 101}
    block = plan_reads(regmap, [regmap.point("battery_soc_pct")])[0]
    with pytest.raises(RegisterDecodeError) as caught:
        decode(regmap, block, [registers[a] for a in range(block.address, block.end)])
    assert caught.value.field == "battery_soc_pct" and caught.value.address == 0x0210
    assert "0x0210" in str(caught.value) and "101" in str(caught.value)


def test_unknown_enum_code_and_nan_are_decode_errors() -> None:
    regmap = load_map("sofar_me3000sp")
    with pytest.raises(RegisterDecodeError, match=r"running_state @0x0200.*raw value 9"):
        decode_image(regmap, {3: {0x0200: 9}}, [regmap.point("running_state")])
    meter = load_map("eastron_sdm120")
    with pytest.raises(RegisterDecodeError, match=r"power_w @0x000C.*not a finite number"):
        decode_image(meter, {4: {0x000C: 0x7FC0, 0x000D: 0}}, [meter.point("power_w")])


def test_encode_is_the_inverse_of_the_golden_fixture() -> None:
    regmap = load_map("sofar_me3000sp")
    values = {k: v for k, v in SOFAR_GOLDEN_VALUES.items()}
    image = encode(regmap, values)
    for field in values:
        point = regmap.point(field)
        for address in range(point.address, point.end):
            assert image[3][address] == SOFAR_GOLDEN_REGISTERS.get(address, 0), (field, hex(address))


def test_encode_rejects_values_outside_the_map() -> None:
    regmap = load_map("sofar_me3000sp")
    with pytest.raises(EncodeError, match="battery_soc_pct"):
        encode(regmap, {"battery_soc_pct": 120})
    with pytest.raises(EncodeError, match="battery_power_w"):
        encode(regmap, {"battery_power_w": 400_000})
    with pytest.raises(KeyError, match="no_such_field"):
        encode(regmap, {"no_such_field": 1})


def test_passive_mode_writes_are_bounded() -> None:
    regmap = load_map("sofar_me3000sp")
    charge = encode_write(regmap, "passive_charge_w", 1000)
    assert (charge.function, charge.address, charge.registers) == (0x42, 0x0102, (0x03E8,))
    standby = encode_write(regmap, "passive_standby")
    assert (standby.address, standby.registers) == (0x0100, (0x5555,))
    auto = encode_write(regmap, "passive_auto_grid_w", -500)
    assert auto.registers == (0x10000 - 500,)
    with pytest.raises(EncodeError, match="above the writable maximum 3000"):
        encode_write(regmap, "passive_charge_w", 3001)
    with pytest.raises(EncodeError, match="read-only"):
        encode_write(regmap, "battery_soc_pct", 50)


def test_write_only_points_are_never_polled() -> None:
    regmap = load_map("sofar_me3000sp")
    polled = {p.field for b in plan_reads(regmap) for p in b.points}
    assert "passive_charge_w" not in polled and "heartbeat" not in polled


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(body)
    return path


HEADER = """name: {name}
manufacturer: X
models: [X1]
kind: meter
tested_on_hardware: false
sources: [test]
max_read_registers: 10
"""


def test_invalid_maps_are_refused_with_the_key(tmp_path: Path) -> None:
    bad_key = HEADER.format(name="m1") + "colour: red\npoints: []\n"
    with pytest.raises(MapError, match="colour: unknown key"):
        load_map_file(_write(tmp_path, "m1", bad_key))
    forbidden = HEADER.format(name="m2") + (
        "forbidden: [{function: 3, start: 5, end: 9}]\n"
        "points: [{field: a, address: 6, type: u16, vendor_name: A}]\n"
    )
    with pytest.raises(MapError, match="forbidden range"):
        load_map_file(_write(tmp_path, "m2", forbidden))
    twice = HEADER.format(name="m3") + (
        "points: [{field: a, address: 6, type: u16, vendor_name: A},\n"
        "         {field: a, address: 7, type: u16, vendor_name: B}]\n"
    )
    with pytest.raises(MapError, match="declared twice"):
        load_map_file(_write(tmp_path, "m3", twice))
    with pytest.raises(MapError, match="must match the file name"):
        load_map_file(_write(tmp_path, "other", HEADER.format(name="m4") + "points: []\n"))
    with pytest.raises(MapError, match="no register map named 'nope'"):
        load_map("nope")
