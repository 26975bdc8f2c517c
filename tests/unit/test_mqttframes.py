"""The bus's bulk MQTT reader (shared/mqttframes.py) against frames paho-mqtt itself encodes.

paho is the reference here: every PUBLISH is built by ``paho.mqtt.client.Client._send_publish``
(MQTT 5 with and without properties, MQTT 3.1.1), captured at paho's packet queue, and the stream
is cut into reads at arbitrary points, as TCP may deliver it.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shared.mqttframes import BulkReader, MalformedFrame, Publish, decode_publish, split


def _client(protocol: int) -> paho.Client:
    return paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol)


def _encoded(protocol: int, send: Any) -> bytes:
    """The bytes paho puts on the wire for ``send(client)``."""
    client = _client(protocol)
    captured: list[bytes] = []

    def queue(_command: int, packet: bytes | bytearray, *_args: Any, **_kwargs: Any) -> int:
        captured.append(bytes(packet))
        return 0

    client._packet_queue = queue  # type: ignore[method-assign]
    client._sock = _Socket([])  # type: ignore[assignment]  # paho encodes only when "connected"
    send(client)
    return b"".join(captured)


def _publish_bytes(protocol: int, message: Publish, expiry: int | None, user: str | None) -> bytes:
    topic, payload, mid, qos = message
    properties = None
    if protocol == paho.MQTTv5 and (expiry is not None or user is not None):
        properties = Properties(PacketTypes.PUBLISH)
        if expiry is not None:
            properties.MessageExpiryInterval = expiry
        if user is not None:
            properties.UserProperty = ("k", user)
    return _encoded(protocol, lambda c: c._send_publish(mid, topic.encode(), payload, qos=qos, properties=properties))


_topics = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#"), min_size=1, max_size=80)
_messages = st.lists(
    st.tuples(
        _topics,
        st.binary(max_size=3000),
        st.integers(1, 65535),
        st.sampled_from([0, 1]),
        st.one_of(st.none(), st.integers(0, 2**32 - 1)),  # message expiry (MQTT 5)
        st.one_of(st.none(), st.text(max_size=200)),  # a user property (MQTT 5)
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(_messages, st.sampled_from([paho.MQTTv5, paho.MQTTv311]))
def test_split_and_decode_paho_publishes(items: list[tuple[Any, ...]], protocol: int) -> None:
    expected = [(topic, payload, mid if qos else 0, qos) for topic, payload, mid, qos, _e, _u in items]
    stream = b"".join(
        _publish_bytes(protocol, (topic, payload, mid, qos), expiry, user)
        for topic, payload, mid, qos, expiry, user in items
    )
    frames, used = split(stream)
    assert used == len(stream)
    decoded = [decode_publish(h, stream, s, e, protocol == paho.MQTTv5) for h, s, e in frames]
    assert decoded == expected


class _Socket:
    """Gives the stream in the given pieces, then would block."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def recv(self, _size: int) -> bytes:
        if not self.pieces:
            raise BlockingIOError
        return self.pieces.pop(0)

    def close(self) -> None:  # paho closes its socket when the client is collected
        self.pieces = []


@settings(max_examples=150, deadline=None)
@given(_messages, st.sampled_from([paho.MQTTv5, paho.MQTTv311]), st.data())
def test_bulk_reader_in_any_reads_and_with_other_packets(
    items: list[tuple[Any, ...]], protocol: int, data: Any
) -> None:
    """Any cut of the stream into reads gives the same publishes, in order; a PINGRESP in between
    goes to paho's own handler (it clears paho's ping timer)."""
    pingresp = _encoded(protocol, lambda c: c._send_pingresp())
    chunks = [_publish_bytes(protocol, (t, p, m, q), e, u) for t, p, m, q, e, u in items]
    at = data.draw(st.integers(0, len(chunks)))
    stream = b"".join(chunks[:at]) + pingresp + b"".join(chunks[at:])
    cuts = sorted(data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=8, unique=True)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True) if b > a]

    client = _client(protocol)
    client._sock = _Socket(pieces)  # type: ignore[assignment]
    client._ping_t = 123.0
    got: list[Publish] = []
    BulkReader(client, got.extend).install()
    for _ in range(len(pieces)):
        assert client.loop_read() == paho.MQTT_ERR_SUCCESS
    assert got == [(t, p, m if q else 0, q) for t, p, m, q, _e, _u in items]
    assert client._ping_t == 0  # paho handled the PINGRESP


def test_remaining_length_of_five_bytes_is_refused() -> None:
    with pytest.raises(MalformedFrame, match="4 bytes"):
        split(b"\x30\xff\xff\xff\xff\x01" + b"x" * 10)


def test_incomplete_packet_waits_for_more() -> None:
    stream = _publish_bytes(paho.MQTTv5, ("a/b", b"payload", 7, 1), None, None)
    for cut in range(len(stream)):
        frames, used = split(stream[:cut])
        assert frames == [] and used == 0


def test_publish_shorter_than_its_topic_is_refused() -> None:
    body = b"\x00\x10ab"  # says 16 bytes of topic, has 2
    with pytest.raises(MalformedFrame):
        decode_publish(0x32, b"\x32\x04" + body, 2, 6, True)


def test_closed_connection_and_protocol_error_reach_paho_as_error_codes() -> None:
    client = _client(paho.MQTTv5)
    client._sock = _Socket([b""])  # type: ignore[assignment]
    BulkReader(client, lambda _p: None).install()
    assert client._packet_read() == paho.MQTT_ERR_CONN_LOST
    client._sock = _Socket([b"\x30\xff\xff\xff\xff\x01"])  # type: ignore[assignment]
    assert client._packet_read() == paho.MQTT_ERR_PROTOCOL
