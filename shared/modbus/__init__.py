"""Modbus transports for the bridges: ``open_link(transport_config) -> Link`` with ``read``,
``write_register(s)`` and ``raw`` (a custom-function PDU a vendor driver builds, such as Sofar's
0x42/0x49 in ``services/inverter_bridge/drivers``); failures raise ``LinkError`` subclasses. The
serving side (the simulator's devices) is ``services.simulator.servers``.
"""

from .errors import (
    LinkConnectionError,
    LinkError,
    LinkExceptionResponse,
    LinkFramingError,
    LinkTimeout,
)
from .link import Link, LinkRegistry, build_link, close_links, endpoint_key, open_link
from .sofar_pdu import (
    AUTO_REGISTER,
    CHARGE_REGISTER,
    DISCHARGE_REGISTER,
    HEARTBEAT_FUNCTION,
    PASSIVE_FUNCTION,
    STANDBY_REGISTER,
    STANDBY_VALUE,
    HeartbeatRequest,
    HeartbeatResponse,
    PassiveModeRequest,
    PassiveModeResponse,
    PassiveStatus,
)

__all__ = [
    "AUTO_REGISTER",
    "CHARGE_REGISTER",
    "DISCHARGE_REGISTER",
    "HEARTBEAT_FUNCTION",
    "PASSIVE_FUNCTION",
    "STANDBY_REGISTER",
    "STANDBY_VALUE",
    "HeartbeatRequest",
    "HeartbeatResponse",
    "Link",
    "LinkConnectionError",
    "LinkError",
    "LinkExceptionResponse",
    "LinkFramingError",
    "LinkRegistry",
    "LinkTimeout",
    "PassiveModeRequest",
    "PassiveModeResponse",
    "PassiveStatus",
    "build_link",
    "close_links",
    "endpoint_key",
    "open_link",
]
