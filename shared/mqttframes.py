"""MQTT packets read in bulk, for the bus's high-volume intake (the recorder's persistent session).

Why hand-written and not paho's reader: paho-mqtt 2.2 reads each packet with three or more
``recv()`` calls (one for the first byte, one per length byte, one for the rest) and decodes every
PUBLISH into an ``MQTTMessage`` with an MQTT 5 ``Properties`` object even when the packet carries
no property; aiomqtt then wraps it once more and queues it on its own. That was ~60 % of the
recorder's CPU at 10,000 messages/s (docs/recorder.md, "Where a message's time goes"). No maintained
Python MQTT client decodes a stream of packets in bulk (aiomqtt is paho; gmqtt and amqtt decode
one packet per call too), so this module does the one narrow part in bulk and nothing else:

* ``split``: cut a byte stream into control packets (fixed header, Variable Byte Integer remaining
  length: MQTT 5 section 1.5.5 and 2.1.4; MQTT 3.1.1 section 2.2.3);
* ``decode_publish``: topic, packet id and payload of a PUBLISH (MQTT 5 section 3.3, 3.1.1
  section 3.3). Properties are skipped: the bus reads none (paho's own path hands them over, and
  nothing in ongrid looks at them; a Topic Alias is never sent to paho clients, which announce a
  Topic Alias Maximum of 0);
* ``BulkReader``: plugs into a paho client in place of its per-packet reader. Every packet that is
  not a QoS 0/1 PUBLISH (CONNACK, SUBACK, PINGRESP, PUBACK, QoS 2, DISCONNECT) still goes to paho's
  own handler, so paho keeps the connection, keepalive, subscriptions and acknowledgements.

tests/unit/test_mqttframes.py checks ``split`` and ``decode_publish`` against frames encoded by
paho itself (hypothesis), whatever the split of the stream into reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from paho.mqtt.client import MalformedPacket, MQTTErrorCode, MQTTv5, time_func
from paho.mqtt.packettypes import PacketTypes

from shared.logs import get_logger

log = get_logger("bus")

PUBLISH = PacketTypes.PUBLISH << 4  # 0x30
# One recv() takes up to this much: ~400 state messages of a neighbourhood at once.
CHUNK = 256 * 1024

# (topic, payload, packet id, qos) of a PUBLISH.
Publish = tuple[str, bytes, int, int]


class MalformedFrame(ValueError):
    """Bytes that are not MQTT (a remaining length over 4 bytes, a PUBLISH shorter than its topic)."""


def split(data: bytes, pos: int = 0) -> tuple[list[tuple[int, int, int]], int]:
    """The complete packets in ``data`` from ``pos``: ``[(first byte, body start, body end)]`` and
    where the first incomplete packet starts (``len(data)`` when none is)."""
    frames: list[tuple[int, int, int]] = []
    size = len(data)
    while pos + 1 < size:
        header = data[pos]
        # Remaining length: 7 bits a byte, least significant first, high bit = more follows.
        length = 0
        shift = 0
        cursor = pos + 1
        while True:
            if cursor >= size:
                return frames, pos
            byte = data[cursor]
            cursor += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MalformedFrame("remaining length longer than 4 bytes")
        end = cursor + length
        if end > size:
            return frames, pos
        frames.append((header, cursor, end))
        pos = end
    return frames, pos


def decode_publish(header: int, data: bytes, start: int, end: int, v5: bool) -> Publish:
    """A PUBLISH whose body is ``data[start:end]``."""
    qos = (header >> 1) & 0x03
    if end - start < 2:
        raise MalformedFrame("PUBLISH without a topic length")
    topic_end = start + 2 + ((data[start] << 8) | data[start + 1])
    pos = topic_end
    mid = 0
    if qos:
        mid = (data[pos] << 8) | data[pos + 1] if pos + 2 <= end else -1
        pos += 2
    if pos > end or mid < 0:
        raise MalformedFrame("PUBLISH shorter than its topic and packet id")
    if v5:
        # Property Length (a Variable Byte Integer), then that many bytes of properties: skipped.
        length = 0
        shift = 0
        while True:
            if pos >= end:
                raise MalformedFrame("PUBLISH without its property length")
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MalformedFrame("property length longer than 4 bytes")
        pos += length
        if pos > end:
            raise MalformedFrame("PUBLISH shorter than its properties")
    topic = data[start + 2 : topic_end].decode("utf-8", "replace")
    return topic, data[pos:end], mid, qos


class BulkReader:
    """paho's ``_packet_read`` for one client, reading everything the socket holds at once.

    PUBLISH packets of QoS 0 and 1 go to ``deliver`` as one list per read, in order; the
    acknowledgement is the caller's (paho's manual ack: install only on a client that has it on,
    see ``shared.bus``). Everything else is handed to paho's handler as its own reader would.
    Uses paho internals (``_packet_read``, ``_in_packet``, ``_packet_handle``, ``_sock_recv``):
    paho 2.2 is pinned in pyproject.toml and tests/unit/test_mqttframes.py runs a real broker
    session through it.
    """

    def __init__(self, client: Any, deliver: Callable[[list[Publish]], None]) -> None:
        self._paho = client
        self._deliver = deliver
        self._v5 = client._protocol == MQTTv5
        self._buffer = b""

    def install(self) -> None:
        # An instance attribute shadows the method: paho's loop_read() calls self._packet_read().
        self._paho._packet_read = self.packet_read

    def packet_read(self) -> MQTTErrorCode:
        paho = self._paho
        try:
            data = paho._sock_recv(CHUNK)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as exc:  # TimeoutError, a reset connection, "socket is None"
            log.debug("MQTT read failed: %s", exc)
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not data:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        with paho._msgtime_mutex:
            paho._last_bytes_received = time_func()
        buffer = self._buffer + data if self._buffer else data
        try:
            frames, used = split(buffer)
        except MalformedFrame as exc:
            log.warning("malformed MQTT packet from the broker: %s", exc)
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._buffer = buffer[used:]
        publishes: list[Publish] = []
        v5 = self._v5
        for header, start, end in frames:
            if header & 0xF0 == PUBLISH and header & 0x06 != 0x04:
                try:
                    publishes.append(decode_publish(header, buffer, start, end, v5))
                except MalformedFrame as exc:
                    log.warning("malformed PUBLISH from the broker: %s", exc)
                    self._deliver(publishes)
                    return MQTTErrorCode.MQTT_ERR_PROTOCOL
                continue
            if publishes:  # what came before this packet goes first
                self._deliver(publishes)
                publishes = []
            rc = self._handle(header, buffer[start:end])
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        if publishes:
            self._deliver(publishes)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle(self, header: int, body: bytes) -> MQTTErrorCode:
        """One packet through paho's own handler, set up as paho's reader leaves it."""
        paho = self._paho
        paho._in_packet = _in_packet(header, body)
        try:
            rc: MQTTErrorCode = paho._packet_handle()
        except MalformedPacket as exc:
            log.warning("malformed MQTT packet from the broker: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        finally:
            paho._in_packet = _in_packet(0, b"")
        return rc


def _in_packet(header: int, body: bytes) -> dict[str, Any]:
    """paho's per-packet reading state (``Client._in_packet``) for a packet read whole."""
    return {
        "command": header,
        "have_remaining": 1 if header else 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": len(body),
        "packet": bytearray(body),
        "to_process": 0,
        "pos": 0,
    }
