"""Register maps as data: load a device model, plan coalesced reads, decode and encode values.

Typical bridge use::

    regmap = load_map("sofar_me3000sp")
    for block in plan_reads(regmap, regmap.readable_points({"realtime"})):
        regs = await link.read(block.function, block.address, block.count, unit)
        values.update(decode(regmap, block, regs))
    state = to_inverter_state(values, device="inv1", model=regmap.name, ts=now)

and the simulator's side: ``encode(regmap, {"battery_power_w": -1200.0, ...})``.
"""

from .codec import (
    EncodeError,
    RegisterDecodeError,
    RegisterError,
    RegisterImage,
    Value,
    WriteRequest,
    decode,
    decode_image,
    decode_point,
    encode,
    encode_point,
    encode_write,
)
from .library import MAPS_DIR, MapError, available_maps, load_map, load_map_file
from .model import Access, AddressRange, DataType, Point, PollGroup, RegisterMap, WordOrder
from .read_planner import ReadBlock, ReadPlanError, naive_reads, plan_reads
from .states import collect_faults, to_inverter_state, to_meter_state

__all__ = [
    "MAPS_DIR",
    "Access",
    "AddressRange",
    "DataType",
    "EncodeError",
    "MapError",
    "Point",
    "PollGroup",
    "ReadBlock",
    "ReadPlanError",
    "RegisterDecodeError",
    "RegisterError",
    "RegisterImage",
    "RegisterMap",
    "Value",
    "WordOrder",
    "WriteRequest",
    "available_maps",
    "collect_faults",
    "decode",
    "decode_image",
    "decode_point",
    "encode",
    "encode_point",
    "encode_write",
    "load_map",
    "load_map_file",
    "naive_reads",
    "plan_reads",
    "to_inverter_state",
    "to_meter_state",
]
