"""The one MQTT adapter every service uses: a thin, typed layer over aiomqtt.

What it adds to aiomqtt, and why:

* a last will (retained ``offline`` on the service's availability topic) and a retained
  ``online`` after every connect, so Home Assistant and the CLI see dead services;
* reconnect with exponential backoff, resubscription, and republication of the latest retained
  message per topic, so a broker restart heals without the services noticing;
* validation at the edge: a handler only ever receives a model that validated. Anything else is
  logged with its topic and error, counted, and answered on the matching ``ack`` (commands) or
  ``event`` topic, and the service keeps running;
* MQTT 5: message expiry on commands (a stale command dies in the broker, not at the inverter) and
  persistent sessions / shared subscriptions for the recorder;
* throughput for the recorder, which takes a whole neighbourhood's messages: what arrived together
  is taken from aiomqtt's queue together (one wake-up, not one asyncio task per message) and can
  go to a batch handler in one call (``subscribe_batch``); a persistent session tells the broker
  how many unacknowledged messages it may hold (``RECEIVE_MAXIMUM``), so a recorder that falls
  behind leaves the backlog in the broker's session queue instead of its own memory.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import struct
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import aiomqtt
from paho.mqtt.client import PUBACK
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from shared import clock, topics
from shared.config import MqttConfig
from shared.contract import model_for_topic
from shared.logs import EpisodeLog, get_logger
from shared.messages import (
    AckStatus,
    Availability,
    AvailabilityState,
    CommandAck,
    Event,
    EventLevel,
    InverterCommand,
    Message,
    utc_now,
)
from shared.mqttframes import BulkReader, Publish
from shared.topics import Kind, Stream

log = get_logger("bus")

Handler = Callable[[str, Any], Awaitable[None]]
RawHandler = Callable[[str, bytes], Awaitable[None]]
BatchHandler = Callable[[list[tuple[str, Any, bytes]]], Awaitable[None]]
# At most this many messages are taken from the client's queue and handled as one batch.
BATCH_MAX = 1000
# MQTT 5 Receive Maximum of a persistent session: the broker sends at most this many QoS 1
# messages before their acknowledgements (which the bus sends after the handler took them).
# Without it paho announces nothing, so a v5 client gets the broker's default (Mosquitto: 20, too
# few to keep a recorder busy) or up to 65,535 held in the client's memory (~5 kB each in paho and
# aiomqtt: the 300-450 MB a recorder grew to while behind). Five batches: on a loaded machine every
# hop (broker, recorder, database) waits for a CPU, and two batches in flight left the recorder
# idle between them (30,000-message burst: 3,400-4,900 messages/s with two, 4,000-5,400 with five,
# in the same hour); read in bulk a message waiting costs ~1.5 kB, so five cost ~8 MB.
RECEIVE_MAXIMUM = 5 * BATCH_MAX
# Messages read ahead of the handler on a persistent session before the bus stops reading the
# socket (``Bus._take_bulk``): the same bound, kept by the bus itself.
READ_AHEAD_MAX = RECEIVE_MAXIMUM
# Topic -> matching subscriptions / model, cached: a neighbourhood repeats the same few thousand
# topics every second. Bounded; past the bound the cache starts again.
_CACHE_MAX = 100_000
# Messages a persistent session delivers before the service has subscribed its handler (see
# ``Bus._dispatch``): kept, up to this many, for the handler that claims them.
UNCLAIMED_MAX = 100_000
ModelChoice = type[Message] | Callable[[str], type[Message] | None]
# (client, message id, qos) of a message to acknowledge once handled (persistent sessions only).
_Ack = tuple[aiomqtt.Client, int, int]
# (topic, payload, ack) of a message taken from the connection.
_Item = tuple[str, bytes | bytearray | Any, _Ack | None]


@dataclass
class _Subscription:
    pattern: str
    match: str  # the pattern without a $share/group/ prefix, for matching incoming topics
    qos: int
    model: ModelChoice | None
    handler: Handler | RawHandler | BatchHandler
    batch: bool = False


@dataclass
class BusStats:
    connects: int = 0
    received: int = 0
    published: int = 0
    dropped_offline: int = 0
    invalid_payloads: int = 0
    handler_errors: int = 0
    invalid_by_topic: dict[str, int] = field(default_factory=dict)


def _strip_share(pattern: str) -> str:
    if pattern.startswith(topics.SHARED_PREFIX + "/"):
        return pattern.split("/", 2)[2]
    return pattern


def _short(error: ValidationError | ValueError) -> str:
    if isinstance(error, ValidationError):
        parts = []
        for item in error.errors(include_url=False)[:5]:
            where = ".".join(str(p) for p in item["loc"]) or "payload"
            parts.append(f"{where}: {item['msg']}")
        return "; ".join(parts)
    return str(error)


class Bus:
    """A connection to the broker for one service.

    Use as ``async with Bus(cfg.mqtt, site=cfg.site, service="recorder") as bus:``. Subscriptions
    may be added before or after the connection is up; they survive reconnects.
    """

    def __init__(
        self,
        mqtt: MqttConfig,
        *,
        site: str,
        service: str,
        client_id: str | None = None,
        persistent_session: bool = False,
        session_expiry_s: int = 0,
        announce: bool = True,
    ) -> None:
        self.mqtt = mqtt
        self.site = topics.check_name(site, "site")
        self.service = topics.check_name(service, "service")
        self.persistent_session = persistent_session
        self.session_expiry_s = session_expiry_s
        # A persistent session needs a stable id; otherwise a random suffix lets two instances of
        # one service coexist instead of kicking each other off the broker.
        suffix = "" if persistent_session else "-" + uuid.uuid4().hex[:8]
        self.client_id = client_id or f"{mqtt.client_id_prefix}-{site}-{service}{suffix}"
        self.announce = announce
        self.stats = BusStats()
        self.connected = asyncio.Event()
        self._subs: list[_Subscription] = []
        self._retained: dict[str, tuple[bytes, int]] = {}
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending_subs: set[asyncio.Task[None]] = set()
        self._unclaimed: deque[tuple[str, bytes, _Ack | None]] = deque(maxlen=UNCLAIMED_MAX)
        self._claims: set[asyncio.Task[None]] = set()
        self._intake: _IntakeQueue | None = None
        # (client, socket fd) while the bulk reader has stopped reading (``_take_bulk``).
        self._paused: tuple[aiomqtt.Client, int] | None = None
        # Publishes waiting for the broker's acknowledgement: it comes on the socket the bulk
        # reader would stop reading, so the reader does not stop while one waits.
        self._awaiting_acks = 0
        self._matches: dict[str, list[_Subscription]] = {}
        self._models: dict[str, type[Message] | None] = {}
        self._closing = False
        self._episode = EpisodeLog(log, f"broker {mqtt.host}:{mqtt.port}", service=service)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def availability_topic(self) -> str:
        return topics.service_availability(self.site, self.service)

    @property
    def event_topic(self) -> str:
        return topics.event(self.site, Kind.SERVICE, self.service)

    async def __aenter__(self) -> Bus:
        self._closing = False
        self._task = asyncio.create_task(self._run(), name=f"bus-{self.service}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Say goodbye (retained ``offline``) and disconnect; the last will is for crashes only."""
        self._closing = True
        client = self._client
        if client is not None and self.announce and self.connected.is_set():
            try:
                offline = Availability(ts=utc_now(), state=AvailabilityState.OFFLINE, reason="stopped")
                await client.publish(self.availability_topic, offline.to_json(), qos=1, retain=True, timeout=2)
            except (aiomqtt.MqttError, TimeoutError):
                pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout)

    # -- publishing --------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        message: Message,
        *,
        retain: bool | None = None,
        qos: int | None = None,
        expiry_s: float | None = None,
    ) -> bool:
        """Publish a model with its kind's QoS and retain flag. Returns False when not sent now.

        Commands get an MQTT 5 message expiry from their ``expires_at``, so a command queued in the
        broker for an offline bridge dies there instead of being acted on late.
        """
        if expiry_s is None and isinstance(message, InverterCommand) and message.expires_at is not None:
            # expires_at is on the process clock (simulated time in an accelerated run); the broker
            # counts wall seconds, so convert at the clock's speed.
            speed = getattr(clock.current(), "speed", 1.0) or 1.0
            expiry_s = max(1.0, (message.expires_at - utc_now()).total_seconds() / speed)
        return await self.publish_raw(
            topic,
            message.to_json(),
            qos=message.QOS if qos is None else qos,
            retain=message.RETAIN if retain is None else retain,
            expiry_s=expiry_s,
        )

    async def publish_raw(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 0,
        retain: bool = False,
        expiry_s: float | None = None,
    ) -> bool:
        data = payload.encode() if isinstance(payload, str) else payload
        if retain:
            # Remembered so that after a broker restart the latest state is there again.
            if data:
                self._retained[topic] = (data, qos)
            else:
                self._retained.pop(topic, None)
        client = self._client
        if client is None or not self.connected.is_set():
            self.stats.dropped_offline += 0 if retain else 1
            return False
        properties = None
        if expiry_s is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = max(1, int(expiry_s))
        # A handler that publishes (the recorder's invalid_payload events) while the bulk reader
        # has stopped reading would wait for an acknowledgement no one reads, and paho sends
        # nothing past 20 unacknowledged: the fuzz suite's recorder answered none of 2,248 invalid
        # payloads. Reading goes on while such an acknowledgement is awaited. Only for the bus's
        # own delivery: a publish from another task (the recorder's status every second) gets its
        # acknowledgement once the handler has caught up, as reading resumes; reading on for it
        # read a resumed session's whole queue into memory (a recorder 60 s behind: 194-209 MB
        # where the bound held it to 111 MB, benchmarks/recorder_throughput.py ``behind``).
        blocking = qos > 0 and self._delivering()
        if blocking:
            self._awaiting_acks += 1
            self._resume_reading(for_ack=True)
        try:
            await client.publish(topic, data, qos=qos, retain=retain, properties=properties, timeout=10)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            self.stats.dropped_offline += 0 if retain else 1
            log.debug("publish to %s failed: %s", topic, exc, extra={"topic": topic})
            return False
        finally:
            if blocking:
                self._awaiting_acks -= 1
        self.stats.published += 1
        return True

    def _delivering(self) -> bool:
        """Whether this runs inside the bus's own delivery (a handler it called), which holds up
        reading while it waits."""
        task = asyncio.current_task()
        return task is not None and (task is self._task or task in self._claims)

    # -- subscribing -------------------------------------------------------------------------

    def subscribe(self, pattern: str, model: ModelChoice | None, handler: Handler, *, qos: int = 1) -> None:
        """Call ``handler(topic, model_instance)`` for every valid message matching ``pattern``.

        ``model`` is a model class, or a function of the topic returning one (``None`` from it
        means the topic is not ours and the message is ignored); ``shared.contract.model_for_topic``
        is the usual choice for wildcard subscriptions over several kinds.
        """
        self._add(_Subscription(pattern, _strip_share(pattern), qos, model or model_for_topic, handler))

    def subscribe_batch(self, pattern: str, model: ModelChoice | None, handler: BatchHandler, *, qos: int = 1) -> None:
        """As ``subscribe``, but ``handler([(topic, model_instance, payload), ...])`` gets every valid
        message that arrived together (up to ``BATCH_MAX``, in order) in one call, each with the
        bytes it arrived as: for a consumer whose cost is per call rather than per message (the
        recorder appends a batch to its spool at once, and keys rows by the payload's bytes).
        On a persistent session the batch is acknowledged after the handler returned."""
        self._add(_Subscription(pattern, _strip_share(pattern), qos, model or model_for_topic, handler, batch=True))

    def subscribe_raw(self, pattern: str, handler: RawHandler, *, qos: int = 1) -> None:
        """Bytes as they arrived, for the few consumers that are not ongrid payloads."""
        self._add(_Subscription(pattern, _strip_share(pattern), qos, None, handler))

    def _add(self, sub: _Subscription) -> None:
        self._subs.append(sub)
        self._matches.clear()
        claimed = [item for item in self._unclaimed if aiomqtt.Topic(item[0]).matches(sub.match)]
        if claimed:
            self._unclaimed = deque(
                (item for item in self._unclaimed if not aiomqtt.Topic(item[0]).matches(sub.match)),
                maxlen=UNCLAIMED_MAX,
            )
            claim = asyncio.get_running_loop().create_task(self._claim(sub, claimed))
            self._claims.add(claim)
            claim.add_done_callback(self._claims.discard)
        client = self._client
        if client is not None and self.connected.is_set():
            task = asyncio.get_running_loop().create_task(self._subscribe_one(client, sub))
            self._pending_subs.add(task)
            task.add_done_callback(self._pending_subs.discard)

    async def subscribed(self, timeout: float = 10.0) -> None:
        """Wait until the connection is up and the broker has acknowledged every subscription."""
        await self.wait_connected(timeout)
        if self._pending_subs:
            await asyncio.wait_for(asyncio.gather(*self._pending_subs), timeout)

    async def _subscribe_one(self, client: aiomqtt.Client, sub: _Subscription) -> None:
        try:
            await client.subscribe(sub.pattern, qos=sub.qos, timeout=10)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.warning("subscribe to %s failed: %s", sub.pattern, exc, extra={"topic": sub.pattern})

    # -- the connection loop -----------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        will = Availability(ts=utc_now(), state=AvailabilityState.OFFLINE, reason="connection lost")
        connect_props = None
        if self.session_expiry_s or self.persistent_session:
            connect_props = Properties(PacketTypes.CONNECT)
            if self.session_expiry_s:
                connect_props.SessionExpiryInterval = self.session_expiry_s
            if self.persistent_session:
                connect_props.ReceiveMaximum = RECEIVE_MAXIMUM
        tls_params = None
        if self.mqtt.tls.enabled:
            tls_params = aiomqtt.TLSParameters(
                ca_certs=self.mqtt.tls.ca_file,
                certfile=self.mqtt.tls.cert_file,
                keyfile=self.mqtt.tls.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client = aiomqtt.Client(
            self.mqtt.host,
            self.mqtt.port,
            username=self.mqtt.username,
            password=self.mqtt.password.get_secret_value() if self.mqtt.password else None,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(self.availability_topic, will.to_json(), qos=1, retain=True) if self.announce else None,
            clean_start=not self.persistent_session,
            keepalive=self.mqtt.keepalive_s,
            properties=connect_props,
            tls_params=tls_params,
            tls_insecure=self.mqtt.tls.insecure if self.mqtt.tls.enabled else None,
            timeout=10,
            queue_type=self._intake_type(),
        )
        if self.persistent_session:
            # paho acknowledges a QoS 1 message on receipt, before the handler has seen it: a
            # SIGKILL then loses what waits in aiomqtt's queue. A persistent session (the recorder)
            # acknowledges after its handler returned instead, so the broker redelivers the rest.
            # aiomqtt 2.5 has no option for it; its paho client is the documented way in.
            client._client.manual_ack_set(True)
            # Its messages are read in bulk (shared.mqttframes): a recorder takes a neighbourhood's.
            # Each read's PUBLISH packets go to aiomqtt's queue as one list, beside its Messages.
            BulkReader(client._client, lambda publishes: self._take_bulk(client, publishes)).install()
        return client

    def _take_bulk(self, client: aiomqtt.Client, publishes: list[Publish]) -> None:
        """Queue what one read decoded; past ``READ_AHEAD_MAX`` waiting messages, stop reading the
        socket until the handler has caught up (``_resume_reading``), so that TCP holds the rest
        in the broker. The broker's own bound (Receive Maximum) is not enough: Mosquitto 2.0.11
        sends a resumed session's whole queue at once (99,000 of 120,000 queued messages were
        waiting here, 200 MB, before this bound; paho's slow reader used to hide it)."""
        intake = self._intake
        if intake is None:
            return
        intake.put_nowait(publishes)  # type: ignore[arg-type]
        # Not before the connection is set up: ``_on_connect`` waits for acknowledgements that
        # come after a resumed session's queue on the socket.
        waiting = intake.messages + len(self._unclaimed)  # the latter wait for the service to subscribe
        if waiting >= READ_AHEAD_MAX and self._paused is None and self.connected.is_set() and not self._awaiting_acks:
            sock = client._client.socket()
            if sock is not None:
                fd = sock.fileno()
                asyncio.get_running_loop().remove_reader(fd)  # aiomqtt's reader, or ours
                self._paused = (client, fd)

    def _resume_reading(self, *, for_ack: bool = False) -> None:
        paused, intake = self._paused, self._intake
        if paused is None or intake is None:
            return
        if not for_ack and intake.messages + len(self._unclaimed) >= READ_AHEAD_MAX // 2:
            return
        self._paused = None
        client, fd = paused
        sock = client._client.socket()
        # Not ``self._client``: a resumed session's queue arrives, and fills the intake, before
        # ``_on_connect`` has run. The connection is the same as long as its socket is.
        if sock is not None and sock.fileno() == fd and not client._disconnected.done():
            asyncio.get_running_loop().add_reader(fd, self._readable, client)

    @staticmethod
    def _readable(client: aiomqtt.Client) -> None:
        """What aiomqtt's own reader callback does (aiomqtt 2.5, ``Client._on_socket_open``), for
        the socket the bus stopped and started reading again."""
        paho_client = client._client
        try:
            while True:
                paho_client.loop_read()
                sock = paho_client.socket()
                # An SSL socket may hold decoded bytes that no new readiness event announces.
                if sock is not None and hasattr(sock, "pending") and sock.pending() > 0:
                    continue
                break
        except Exception as exc:  # a broken connection: end the message iteration with it
            if not client._disconnected.done():
                client._disconnected.set_exception(exc)

    def _intake_type(self) -> type[_IntakeQueue]:
        """aiomqtt's ``queue_type``: the client's incoming queue, kept so the bus can drain it."""
        bus = self

        class Intake(_IntakeQueue):
            def __init__(self, maxsize: int = 0) -> None:
                super().__init__(maxsize)
                bus._intake = self

        return Intake

    async def _run(self) -> None:
        backoff = self.mqtt.reconnect_min_s
        while not self._closing:
            try:
                async with self._make_client() as client:
                    await self._on_connect(client)
                    backoff = self.mqtt.reconnect_min_s
                    async for message in client.messages:
                        await self._dispatch_batch(self._read_more(client, self._items(client, [message])))
                        self._resume_reading()
            except aiomqtt.MqttError as exc:
                self._episode.failure(exc)
            finally:
                self._client = None
                self._paused = None
                self.connected.clear()
            if self._closing:
                break
            # Jitter keeps a fleet of services from reconnecting in lockstep after a broker restart.
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self.mqtt.reconnect_max_s)

    def _items(self, client: aiomqtt.Client, taken: list[Any]) -> list[_Item]:
        """What was taken from the intake queue, as (topic, payload, ack): aiomqtt Messages, and
        lists of PUBLISH packets read in bulk (``BulkReader``, persistent sessions)."""
        persistent = self.persistent_session
        out: list[_Item] = []
        for item in taken:
            if type(item) is list:
                out += [(topic, payload, (client, mid, qos)) for topic, payload, mid, qos in item]
            else:
                ack = (client, item.mid, item.qos) if persistent else None
                out.append((item.topic.value, item.payload, ack))
        return out

    def _read_more(self, client: aiomqtt.Client, batch: list[_Item]) -> list[_Item]:
        """Add to ``batch`` what is already queued and what the socket already holds, up to about
        ``BATCH_MAX`` messages. aiomqtt's reader callback reads once per event-loop turn, so under
        load every read would be its own batch (its own spool append, its own PUBACK write);
        reading on here with paho's ``loop_read`` (what that callback calls) makes a backlog one
        batch."""
        intake = self._intake
        if intake is None:
            return batch
        while len(batch) < BATCH_MAX:
            waiting = intake.take(BATCH_MAX - len(batch))
            if waiting:
                batch += self._items(client, waiting)
                continue
            try:
                client._client.loop_read()
            except Exception:  # a broken connection: aiomqtt's own callback meets it and reports it
                break
            if intake.empty():
                break
        return batch

    async def _on_connect(self, client: aiomqtt.Client) -> None:
        self._client = client
        self.stats.connects += 1
        self._episode.success()
        if self.announce:
            online = Availability(ts=utc_now(), state=AvailabilityState.ONLINE)
            await client.publish(self.availability_topic, online.to_json(), qos=1, retain=True)
        for sub in self._subs:
            await client.subscribe(sub.pattern, qos=sub.qos)
        # Until ``connected`` is set, publish() only records retained messages; one recorded while
        # this loop awaits would otherwise be lost until the next reconnect, so loop until none is new.
        sent: dict[str, bytes] = {}
        while pending := [(t, d, q) for t, (d, q) in self._retained.items() if sent.get(t) != d]:
            for topic, data, qos in pending:
                await client.publish(topic, data, qos=qos, retain=True)
                sent[topic] = data
        self.connected.set()
        log.info("connected to %s:%d as %s", self.mqtt.host, self.mqtt.port, self.client_id)

    # -- incoming ----------------------------------------------------------------------------

    def _matching(self, topic: str) -> list[_Subscription]:
        matched = self._matches.get(topic)
        if matched is None:
            parsed = aiomqtt.Topic(topic)
            matched = [sub for sub in self._subs if parsed.matches(sub.match)]
            if len(self._matches) >= _CACHE_MAX:
                self._matches.clear()
            self._matches[topic] = matched
        return matched

    async def _dispatch(self, topic: str, payload: bytes, ack: _Ack | None = None) -> None:
        await self._dispatch_batch([(topic, payload, ack)])

    async def _dispatch_batch(self, items: list[_Item]) -> None:
        """Deliver messages that arrived together; acknowledge each once its handlers have run."""
        batches: dict[int, tuple[_Subscription, list[tuple[str, Any, bytes]]]] = {}
        acks: list[_Ack | None] = []
        for topic, raw, ack in items:
            self.stats.received += 1
            payload = raw if isinstance(raw, bytes) else bytes(raw or b"")
            matched = self._matching(topic)
            if not matched and self.persistent_session:
                # A persistent session's queued messages arrive as soon as the broker accepts the
                # connection, before the service has (re)subscribed its handler (the service runner
                # connects first, then runs the service). Dropping them here lost everything
                # published while the recorder was down; keep them (unacknowledged) for the
                # subscription that claims them.
                self._unclaimed.append((topic, payload, ack))
                continue
            for sub in matched:
                if sub.batch:
                    # Validation inline (not through ``_validated``): one coroutine less per message.
                    model = self._model(sub, topic)
                    if model is None:
                        continue
                    try:
                        value = model.model_validate_json(payload)
                    except (ValidationError, ValueError) as exc:
                        await self._reject(topic, payload, exc, addressee=_addressee(sub))
                        continue
                    batches.setdefault(id(sub), (sub, []))[1].append((topic, value, payload))
                else:
                    await self._deliver(sub, [(topic, payload)])
            acks.append(ack)
        for sub, values in batches.values():
            await self._call_batch(sub, values)
        self._ack_all(acks)

    async def _claim(self, sub: _Subscription, items: list[tuple[str, bytes, _Ack | None]]) -> None:
        if sub.batch:
            for start in range(0, len(items), BATCH_MAX):
                chunk = items[start : start + BATCH_MAX]
                values = []
                for topic, payload, _ack in chunk:
                    value = await self._validated(sub, topic, payload)
                    if value is not None:
                        values.append((topic, value, payload))
                await self._call_batch(sub, values)
                self._ack_all([ack for _topic, _payload, ack in chunk])
            self._resume_reading()
            return
        for topic, payload, ack in items:
            await self._deliver(sub, [(topic, payload)])
            self._ack(ack)
        self._resume_reading()

    def _ack(self, ack: _Ack | None) -> None:
        if ack is None:
            return
        client, mid, qos = ack
        # On a connection that has since gone, the broker redelivers instead (at least once; the
        # recorder's rows overwrite by series and time).
        if qos > 0 and client is self._client:
            client._client.ack(mid, qos)

    def _ack_all(self, acks: list[_Ack | None]) -> None:
        """Acknowledge a batch. QoS 1 PUBACKs go out as one write: paho sends each acknowledgement
        with its own ``send()``, which was the largest single cost of a recorder taking 10,000
        messages a second. paho 2.2's packet queue takes the joined PUBACK packets (4 bytes each,
        MQTT 5 section 3.4, reason code omitted = success) as one; without it, one ``ack()`` each."""
        mids = [ack[1] for ack in acks if ack is not None and ack[2] == 1 and ack[0] is self._client]
        others = [ack for ack in acks if ack is not None and ack[2] != 1]
        client = self._client
        queue = getattr(client._client, "_packet_queue", None) if client is not None else None
        if len(mids) > 1 and queue is not None:
            queue(PUBACK, b"".join([struct.pack("!BBH", PUBACK, 2, mid) for mid in mids]), 0, 1)
        else:
            for mid in mids:
                self._ack((client, mid, 1))  # type: ignore[arg-type]
        for ack in others:
            self._ack(ack)

    def _model(self, sub: _Subscription, topic: str) -> type[Message] | None:
        if isinstance(sub.model, type):
            return sub.model  # type: ignore[return-value]
        if sub.model is not model_for_topic:
            return sub.model(topic)  # type: ignore[misc]
        # The contract's mapping is fixed: remember it per topic.
        try:
            return self._models[topic]
        except KeyError:
            model = model_for_topic(topic)
            if len(self._models) >= _CACHE_MAX:
                self._models.clear()
            self._models[topic] = model
            return model

    async def _validated(self, sub: _Subscription, topic: str, payload: bytes) -> Any:
        """The payload as its model, or ``None`` (not ours, or invalid: rejected and reported)."""
        model = self._model(sub, topic)
        if model is None:
            return None
        try:
            return model.model_validate_json(payload)
        except (ValidationError, ValueError) as exc:
            await self._reject(topic, payload, exc, addressee=_addressee(sub))
            return None

    async def _deliver(self, sub: _Subscription, items: list[tuple[str, bytes]]) -> None:
        for topic, payload in items:
            if sub.model is None:
                await self._call(sub, topic, payload)
                continue
            value = await self._validated(sub, topic, payload)
            if value is not None:
                await self._call(sub, topic, value)

    async def _call(self, sub: _Subscription, topic: str, value: Any) -> None:
        try:
            await cast(Handler, sub.handler)(topic, value)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("handler for %s failed", sub.pattern, extra={"topic": topic})
            await self._handler_failed(topic, exc)

    async def _call_batch(self, sub: _Subscription, values: list[tuple[str, Any, bytes]]) -> None:
        if not values:
            return
        try:
            await cast(BatchHandler, sub.handler)(values)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("handler for %s failed on a batch of %d", sub.pattern, len(values))
            await self._handler_failed(values[0][0], exc)

    async def _handler_failed(self, topic: str, exc: Exception) -> None:
        """Count a handler's failure and say so on the service's event topic (logged by the caller,
        in the ``except`` where the traceback is)."""
        self.stats.handler_errors += 1
        await self.publish(
            self.event_topic,
            Event(
                ts=utc_now(),
                level=EventLevel.ERROR,
                code="handler_error",
                message=f"{type(exc).__name__}: {exc}"[:500],
                topic=topic,
            ),
        )

    async def _reject(
        self, topic: str, payload: bytes, error: ValidationError | ValueError, *, addressee: bool = True
    ) -> None:
        """Never act on it; say so where the sender will look (when we are the one it was sent to)."""
        self.stats.invalid_payloads += 1
        self.stats.invalid_by_topic[topic] = self.stats.invalid_by_topic.get(topic, 0) + 1
        reason = _short(error)
        log.warning("invalid payload rejected: %s", reason, extra={"topic": topic})
        try:
            parts = topics.parse(topic)
        except ValueError:
            parts = None
        if parts is not None and parts.stream is Stream.EVENT:
            # Never answer an event with an event: a wildcard reader that cannot read events (its
            # own included) would answer its own answer for ever, starving everything else.
            return
        if not addressee:
            parts = None
        if parts is not None and parts.stream is Stream.COMMAND:
            ack = CommandAck(
                ts=utc_now(),
                command_id=_command_id(payload),
                device=parts.device,
                status=AckStatus.ERROR,
                reason=f"invalid payload: {reason}"[:1000],
            )
            await self.publish(topics.topic(parts.site, parts.kind, parts.device, Stream.ACK), ack)
            return
        event_topic = (
            topics.topic(parts.site, parts.kind, parts.device, Stream.EVENT)
            if parts is not None and parts.stream is Stream.SET
            else self.event_topic
        )
        event = Event(
            ts=utc_now(),
            level=EventLevel.WARNING,
            code="invalid_payload",
            message=f"payload on {topic} rejected: {reason}"[:1000],
            topic=topic,
            details={"bytes": len(payload), "count": self.stats.invalid_by_topic[topic]},
        )
        await self.publish(event_topic, event)


class _IntakeQueue(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's incoming queue, with a way to take what is waiting without one task per message.
    It holds aiomqtt Messages and, on a persistent session, lists of PUBLISH packets read in bulk."""

    messages = 0  # waiting, a bulk list counting its length

    def put_nowait(self, item: Any) -> None:
        super().put_nowait(item)
        self.messages += len(item) if type(item) is list else 1

    def get_nowait(self) -> Any:
        item = super().get_nowait()
        self.messages -= len(item) if type(item) is list else 1
        return item

    def take(self, limit: int) -> list[Any]:
        """Items waiting, until they hold ``limit`` messages (a bulk list counts its length)."""
        out: list[Any] = []
        count = 0
        while count < limit:
            try:
                item = self.get_nowait()
            except asyncio.QueueEmpty:
                break
            out.append(item)
            count += len(item) if type(item) is list else 1
        return out


def _addressee(sub: _Subscription) -> bool:
    """Only a subscriber that asked for the topic's model by name is the one a message was sent to
    (the bridge for its commands, the dispatcher for mode requests); a wildcard reader such as the
    recorder reports a bad one on its own event topic instead of answering in the owner's name."""
    return isinstance(sub.model, type)


def _command_id(payload: bytes) -> str | None:
    """Best effort: echo the id of a command we could not accept, so the sender can match it."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate ("\ud800"): no answer could carry it
        return None
    return value
