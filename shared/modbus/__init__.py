"""Modbus transports for the bridges and serving helpers for the simulator.

Bridge side: ``open_link(transport_config) -> Link`` with ``read``, ``write_register(s)``,
``raw``/``passive_mode``/``heartbeat`` (Sofar 0x42/0x49); failures raise ``LinkError`` subclasses.
Simulator side: ``RegisterContext`` + ``MapSource`` + ``start_server`` for TCP / RTU / RTU over
TCP, and ``SolarmanEmulator`` for a V5 logger.
"""

from .errors import (
    LinkConnectionError,
    LinkError,
    LinkExceptionResponse,
    LinkFramingError,
    LinkTimeout,
)
from .link import Link, LinkRegistry, build_link, close_links, endpoint_key, open_link
from .server import (
    CustomHandler,
    DeviceSource,
    MapSource,
    RegisterContext,
    ServedEndpoint,
    ServeError,
    start_server,
    static_source,
)
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
from .solarman_emulator import ContextRtuHandler, RtuOverTcpForwarder, SolarmanEmulator

__all__ = [
    "AUTO_REGISTER",
    "CHARGE_REGISTER",
    "DISCHARGE_REGISTER",
    "HEARTBEAT_FUNCTION",
    "PASSIVE_FUNCTION",
    "STANDBY_REGISTER",
    "STANDBY_VALUE",
    "ContextRtuHandler",
    "CustomHandler",
    "DeviceSource",
    "HeartbeatRequest",
    "HeartbeatResponse",
    "Link",
    "LinkConnectionError",
    "LinkError",
    "LinkExceptionResponse",
    "LinkFramingError",
    "LinkRegistry",
    "LinkTimeout",
    "MapSource",
    "PassiveModeRequest",
    "PassiveModeResponse",
    "PassiveStatus",
    "RegisterContext",
    "RtuOverTcpForwarder",
    "ServeError",
    "ServedEndpoint",
    "SolarmanEmulator",
    "build_link",
    "close_links",
    "endpoint_key",
    "open_link",
    "start_server",
    "static_source",
]
