"""Modbus responses fuzzed at the transport boundary.

* ``shared.modbus.rtu.parse_response`` on random frames, and on well-formed frames (right unit,
  function and CRC) carrying random data: it returns bytes or raises the LinkError family.
* The Link against a fake device on a real socket (Modbus TCP and RTU over TCP) answering every
  request with hypothesis-drawn bytes: random junk, MBAP/RTU frames with valid framing and random
  PDUs, wrong lengths, exception codes, a closed connection. Reads, and the Sofar driver's 0x42
  write and 0x49 heartbeat, may only fail with ``LinkError``: nothing else escapes to the bridges.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from services.inverter_bridge.drivers import SofarPassiveDriver
from services.inverter_bridge.limits import CHARGE, Setpoint
from shared.config.transports import ModbusTcp, RtuOverTcp
from shared.messages import CommandMode
from shared.modbus import LinkError, close_links, open_link
from shared.modbus.rtu import crc16, frame, parse_response
from shared.registers import load_map

UNIT = 1


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<H", crc16(body))


@settings(max_examples=2000, deadline=None)
@given(adu=st.binary(max_size=300), function=st.sampled_from([3, 4, 6, 16, 0x42, 0x49]))
def test_parse_response_on_random_bytes(adu: bytes, function: int) -> None:
    try:
        assert isinstance(parse_response("fuzz", adu, UNIT, function), bytes)
    except LinkError:
        pass


@settings(max_examples=2000, deadline=None)
@given(data=st.binary(max_size=260), function=st.sampled_from([3, 4, 6, 16, 0x42, 0x49]), flag=st.booleans())
def test_parse_response_on_well_framed_random_data(data: bytes, function: int, flag: bool) -> None:
    adu = frame(UNIT, function | (0x80 if flag else 0), data)
    try:
        assert isinstance(parse_response("fuzz", adu, UNIT, function), bytes)
    except LinkError:
        pass


# A reply: "close" (hang up), or bytes built from the request (the MBAP transaction id echoed).
Reply = tuple[str, bytes]

PDU = st.one_of(
    st.binary(max_size=255),
    st.tuples(st.sampled_from([3, 4, 0x83, 0x84, 0x42, 0xC2, 0x49, 0xC9]), st.binary(max_size=40)).map(
        lambda t: bytes([t[0]]) + t[1]
    ),
    st.tuples(st.sampled_from([3, 4]), st.integers(0, 255), st.binary(max_size=60)).map(
        lambda t: bytes([t[0], t[1]]) + t[2]
    ),
)
REPLIES = st.lists(
    st.one_of(
        st.just(("close", b"")),
        st.binary(min_size=1, max_size=300).map(lambda b: ("raw", b)),
        PDU.map(lambda p: ("pdu", p)),
        st.tuples(PDU, st.integers(0, 0xFFFF)).map(lambda t: ("badlen", t[0] + struct.pack(">H", t[1]))),
    ),
    min_size=1,
    max_size=4,
)


async def fake_device(replies: list[Reply], rtu_framing: bool) -> tuple[asyncio.Server, int]:
    queue = list(replies)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.read(300)
                if not request:
                    return
                kind, body = queue.pop(0) if queue else ("close", b"")
                if kind == "close":
                    return
                if kind == "raw":
                    writer.write(body)
                elif rtu_framing:
                    if kind == "badlen":
                        writer.write(bytes([UNIT]) + body)  # no CRC, odd length
                    else:
                        writer.write(with_crc(bytes([UNIT]) + body))
                else:
                    tid = request[:2] if len(request) >= 2 else b"\x00\x01"
                    length = len(body) + 1 if kind == "pdu" else struct.unpack(">H", body[-2:])[0]
                    pdu = body if kind == "pdu" else body[:-2]
                    writer.write(tid + b"\x00\x00" + struct.pack(">H", length & 0xFFFF) + bytes([UNIT]) + pdu)
                await writer.drain()
        except (ConnectionError, IndexError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def exercise(replies: list[Reply], rtu_framing: bool) -> None:
    server, port = await fake_device(replies, rtu_framing)
    kind = "rtu_over_tcp" if rtu_framing else "modbus_tcp"
    cls = RtuOverTcp if rtu_framing else ModbusTcp
    link = open_link(cls(kind=kind, host="127.0.0.1", port=port, unit=UNIT, timeout_s=0.1, retries=0))  # type: ignore[arg-type]
    driver = SofarPassiveDriver(link, load_map("sofar_me3000sp"), UNIT)
    try:
        for call in (
            lambda: link.read(3, 0x0200, 10, UNIT),
            lambda: link.read(4, 0x0000, 2, UNIT),
            lambda: driver.set_battery(Setpoint(CommandMode.CHARGE, CHARGE, 1000)),
            lambda: driver.heartbeat(),
        ):
            with contextlib.suppress(LinkError):
                await call()
    finally:
        await close_links()
        server.close()
        await server.wait_closed()


@settings(max_examples=30, deadline=None)
@given(replies=REPLIES)
def test_link_over_modbus_tcp_raises_only_link_errors(replies: list[Reply]) -> None:
    asyncio.run(exercise(replies, rtu_framing=False))


@settings(max_examples=30, deadline=None)
@given(replies=REPLIES)
def test_link_over_rtu_over_tcp_raises_only_link_errors(replies: list[Reply]) -> None:
    asyncio.run(exercise(replies, rtu_framing=True))
