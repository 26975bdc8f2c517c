"""The simulator's device servers: Modbus TCP / RTU / RTU over TCP from a register map
(``modbus``) and a Solarman V5 logger in front of them (``solarman``).

``RegisterContext`` + ``MapSource`` + ``start_server`` serve a map; ``SolarmanEmulator`` wraps an
RTU handler in the V5 framing.
"""

from .modbus import (
    CustomHandler,
    DeviceSource,
    MapSource,
    RegisterContext,
    ServedEndpoint,
    ServeError,
    start_server,
    static_source,
)
from .solarman import ContextRtuHandler, RtuOverTcpForwarder, SolarmanEmulator

__all__ = [
    "ContextRtuHandler",
    "CustomHandler",
    "DeviceSource",
    "MapSource",
    "RegisterContext",
    "RtuOverTcpForwarder",
    "ServeError",
    "ServedEndpoint",
    "SolarmanEmulator",
    "start_server",
    "static_source",
]
