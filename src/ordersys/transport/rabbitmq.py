"""The transport over RabbitMQ, through kombu (the ``[rabbitmq]`` extra).

A direct exchange ``<prefix>.commands`` with a durable queue per service,
replies by direct reply-to, and a topic exchange ``<prefix>.events`` with a
durable queue per subscriber. A request carries its caller's deadline: a
service that takes it up after its caller gave up drops it unanswered. Consumers
whose broker is away wait for it (:mod:`ordersys.outages`), at start too.

Requests and replies are the hot path: each caller thread publishes on a
connection of its own and drains its replies there (a batch of requests goes
out in one write, and its replies are waited for together), bodies are
encoded with orjson, and a request to a service served by the same transport
is answered in process.

A service answers its queries concurrently (see
:func:`~ordersys.transport.answers_concurrently`) on a pool of
``request_concurrency`` threads, and its other requests (commands) one at a
time, in order, on its consuming thread. Only that thread writes on its
connection (py-amqp's are not thread-safe): a pool thread hands its reply back
(:class:`_Handback`), and the consuming thread, which waits for the broker's
socket and for those hand-backs at once, writes it with the request's ack.
At most ``prefetch`` requests are in flight per consumer.
"""

from __future__ import annotations

import functools
import json
import logging
import select
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast
from weakref import WeakKeyDictionary

import orjson
from pydantic_core import to_jsonable_python

from ordersys.errors import (
    InfrastructureUnavailable,
    OrdersysError,
    RequestTimeout,
    error_from_dict,
)
from ordersys.extras import needs
from ordersys.observability.tracing import SpanKind, inject_into, span
from ordersys.outages import Outages, server_of
from ordersys.settings import Settings, address_of
from ordersys.transport import (
    ERROR_HEADER,
    Broker,
    Envelope,
    EventHandler,
    RequestHandler,
    Transport,
    answered_here,
    answers_concurrently,
    handling,
    replies_from,
    reply_from,
    result_of,
)

with needs("rabbitmq", "KombuTransport"):
    import amqp
    from amqp import spec
    from amqp.exceptions import RecoverableConnectionError
    from amqp.method_framing import frame_writer
    from amqp.serialization import dumps
    from amqp.transport import TCPTransport
    from kombu.connection import Connection
    from kombu.entity import Exchange, Queue
    from kombu.message import Message as KombuMessage
    from kombu.messaging import Consumer, Producer

logger = logging.getLogger("ordersys.transport")

REPLY_TO = "amq.rabbitmq.reply-to"
DEADLINE_HEADER = "x-ordersys-deadline"
"""When the caller of a request stops waiting for its reply (Unix time)."""

JSON = "application/json"
READ_AHEAD = 65536
"""Bytes a connection asks its socket for at once."""


def _encode(value: Any) -> bytes:
    """JSON, as kombu's serializer writes what JSON has; anything else as
    pydantic writes it (a Decimal as a string, say)."""
    try:
        return orjson.dumps(
            value, default=to_jsonable_python, option=orjson.OPT_NON_STR_KEYS
        )
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits, which a client may send (a
        # huge position, say): the receiver is the one to refuse them.
        return json.dumps(to_jsonable_python(value)).encode()


def _read_ahead(connection: Connection) -> None:
    """Have ``connection`` read what its socket holds at once. py-amqp asks
    for exactly the bytes it parses next (a frame's header, its payload, its
    end: about ten system calls per message) and keeps what it was given
    beyond that in its read buffer, so asking for more is safe."""
    transport = connection.connection.transport
    if type(transport) is TCPTransport:
        recv = transport.sock.recv
        transport._quick_recv = lambda _wanted: recv(READ_AHEAD)


class _Writes:
    """What a channel sends, gathered into one write to its socket (py-amqp
    writes each method on its own). The frame writer reuses one buffer for
    every frame, so each is copied."""

    def __init__(self, channel: Any) -> None:
        self.connection = channel.connection
        self.chunks: list[bytes] = []
        self.write_frame = frame_writer(self.connection, self)

    def write(self, data: bytes | memoryview) -> None:
        self.chunks.append(bytes(data))

    @contextmanager
    def gathered(self) -> Iterator[None]:
        """Methods sent on the channel in the block go out together after it."""
        connection = self.connection
        direct, connection.frame_writer = connection.frame_writer, self.write_frame
        try:
            yield
        except BaseException:
            self.chunks.clear()
            raise
        finally:
            connection.frame_writer = direct
        data = b"".join(self.chunks)
        self.chunks.clear()
        connection.transport.write(data)


@functools.lru_cache(maxsize=1024)
def _publish_arguments(exchange: str, routing_key: str) -> bytes:
    return bytes(dumps("Bssbb", (0, exchange, routing_key, False, False)))


def _publish(channel: Any, exchange: str, routing_key: str, message: Any) -> None:
    """Basic.Publish, its arguments serialized once per destination, and
    without py-amqp's check for a blocked connection, which costs a
    non-blocking read per message: a broker that blocks publishers stops
    reading, and the caller's deadline bounds the wait."""
    connection = channel.connection
    if connection is None:
        raise RecoverableConnectionError("connection already closed")
    connection.frame_writer(
        1,
        channel.channel_id,
        spec.Basic.Publish,
        _publish_arguments(exchange, routing_key),
        message,
    )


def _with_producer(
    callback: Callable[[Any, KombuMessage, Producer], None],
    producer: Producer,
    body: Any,
    message: KombuMessage,
) -> None:
    callback(body, message, producer)


def _headers(message: KombuMessage) -> dict[str, str]:
    return {k: str(v) for k, v in (message.headers or {}).items()}


Callback = Callable[[Any, KombuMessage, Producer], None]


@dataclass(frozen=True)
class Undecodable:
    """The body of a message that could not be decoded, handed to the callback
    so that it can dead-letter the message instead of the consumer failing."""

    raw: bytes
    error: str


def _undecodable(
    callback: Callback, producer: Producer, message: KombuMessage, error: Exception
) -> None:
    callback(Undecodable(bytes(message.body), str(error)), message, producer)


def _decoded_json(
    callback: Callback, producer: Producer, message: KombuMessage
) -> None:
    try:
        body = orjson.loads(message.body)
    except orjson.JSONDecodeError as e:
        _undecodable(callback, producer, message, e)
        return
    callback(body, message, producer)


CONNECT_TIMEOUT = 5
"""Seconds a consumer waits for the broker to accept its connection."""


def consume_in_thread(
    url: str,
    name: str,
    queues: list[Queue],
    callback: Callback,
    prefetch: int,
    stopping: threading.Event,
    *,
    declare: Sequence[Queue] = (),
    outages: Outages | None = None,
    json_only: bool = False,
    handback: _Handback | None = None,
) -> threading.Thread:
    """Consume ``queues`` in a daemon thread until ``stopping`` is set,
    declaring ``declare`` too (a dead-letter queue, say) on each connection.
    ``callback(body, message, producer)`` acknowledges each message itself.
    With ``json_only``, every body is decoded as JSON (by orjson, whatever
    content type it claims, with none of kombu's type markers), at a
    fraction of the cost of kombu's serializers. With ``handback``, the
    thread also runs the work other threads hand it, and on stopping waits
    (bounded) for the work still out (see :class:`_Handback`).

    A broker that is not there yet, or goes away, is waited for (reported
    through ``outages``) for as long as it takes. Returns once consuming has
    begun, or once the first attempt has failed: the thread keeps trying."""
    attempted = threading.Event()
    thread = threading.Thread(
        target=_consume_forever,
        args=(url, queues, declare, callback, prefetch, stopping, attempted),
        kwargs={
            "outages": outages or Outages(name),
            "json_only": json_only,
            "handback": handback,
        },
        name=name,
        daemon=True,
    )
    thread.start()
    attempted.wait(CONNECT_TIMEOUT * 2)
    return thread


def _consume_forever(
    url: str,
    queues: list[Queue],
    declare: Sequence[Queue],
    callback: Callback,
    prefetch: int,
    stopping: threading.Event,
    attempted: threading.Event,
    *,
    outages: Outages,
    json_only: bool,
    handback: _Handback | None,
) -> None:
    while not stopping.is_set():
        try:
            with Connection(
                url, heartbeat=10, connect_timeout=CONNECT_TIMEOUT
            ) as connection:
                channel = connection.channel()
                _read_ahead(connection)
                for queue in declare:
                    queue(channel).declare()
                channel.basic_qos(0, prefetch, False)
                producer = Producer(channel)
                consumer = Consumer(
                    channel,
                    queues=queues,
                    callbacks=[partial(_with_producer, callback, producer)],
                    on_decode_error=partial(_undecodable, callback, producer),
                    on_message=(
                        partial(_decoded_json, callback, producer)
                        if json_only
                        else None
                    ),
                )
                with consumer:
                    outages.over("RabbitMQ")
                    attempted.set()
                    if handback is None:
                        _drain_until(connection, stopping)
                    else:
                        handback.serve(connection, channel, stopping)
        except Exception as e:
            attempted.set()
            if stopping.is_set():
                return
            if server_of(e) == "RabbitMQ":
                reason = str(e) or repr(e)
                lost = InfrastructureUnavailable("RabbitMQ", address_of(url), reason)
                outages.wait(lost, stopping)
            else:
                logger.exception("%s failed; consuming again", outages.worker)
                stopping.wait(1.0)


def _drain_until(connection: Connection, stopping: threading.Event) -> None:
    """Handle what the broker delivers until ``stopping`` is set."""
    while not stopping.is_set():
        try:
            connection.drain_events(timeout=0.5)
        except TimeoutError:
            connection.heartbeat_check()


STOP_GRACE = 5.0
"""Seconds a stopping service waits for the requests its pool still runs (a
query waits up to 5 s for its read model's position) before it drops them:
its connection closes, and the broker delivers them again elsewhere."""

Work = Callable[[Any], None]
"""Work for a consuming thread, called with its channel."""


class _Handback:
    """Work other threads hand to a consuming thread, which alone may write on
    its connection: queued, and the thread woken through a socket pair that it
    waits on together with the broker's socket.

    ``in_flight`` counts the work handed out and not back yet; only the
    consuming thread changes it (:meth:`expect`, :meth:`run`).

    The consuming thread may also hold deliveries back (:meth:`hold`) until
    it has taken in everything the broker has sent so far: then ``release``
    gets them all at once, with the channel (a batch of commands, say)."""

    def __init__(self, release: Callable[[list[Any], Any], None] | None = None) -> None:
        self._work: deque[Work] = deque()
        self._wake, self._waker = socket.socketpair()
        self._wake.setblocking(False)
        self._waker.setblocking(False)
        self.in_flight = 0
        self.held: list[Any] = []
        self._release = release

    def hold(self, item: Any) -> None:
        """Keep ``item`` for the next release (consuming thread)."""
        self.held.append(item)

    def _release_held(self, channel: Any) -> None:
        held, self.held = self.held, []
        if held and self._release is not None:
            self._release(held, channel)

    def fileno(self) -> int:
        return self._wake.fileno()

    def expect(self) -> None:
        """One more piece of work will be handed back (consuming thread)."""
        self.in_flight += 1

    def put(self, work: Work) -> None:
        """Hand ``work`` to the consuming thread (any thread)."""
        self._work.append(work)
        # A full pair is awake already; a closed one serves no more.
        with suppress(OSError):
            self._waker.send(b"\0")

    def run(self, channel: Any) -> None:
        """Do the work handed back, on ``channel`` (consuming thread)."""
        while self._work:
            work = self._work.popleft()
            self.in_flight -= 1
            work(channel)

    def serve(
        self, connection: Connection, channel: Any, stopping: threading.Event
    ) -> None:
        """Handle deliveries and hand-backs until ``stopping`` is set, then
        finish the work still out, for :data:`STOP_GRACE` at most."""
        while not stopping.is_set():
            self._next(connection, channel, 0.5)
        self._release_held(channel)
        grace = time.monotonic() + STOP_GRACE
        while self.in_flight > 0 and (left := grace - time.monotonic()) > 0:
            self._next(connection, channel, min(left, 0.5))
        if self.in_flight:
            logger.warning("stopped with %d requests unanswered", self.in_flight)

    def _next(self, connection: Connection, channel: Any, timeout: float) -> None:
        """Wait up to ``timeout`` for a frame from the broker or for work
        handed back, and handle what came."""
        amqp_connection = connection.connection
        transport = amqp_connection.transport
        if self.held and not _buffered(transport) and not _readable(transport.sock):
            self._release_held(channel)
        if not _buffered(transport):
            ready, _, _ = select.select([transport.sock, self], [], [], timeout)
            if self in ready:
                self._woken()
            self.run(channel)
            if not ready:
                connection.heartbeat_check()
            if transport.sock not in ready:
                return
        try:
            # One frame (a delivery is three): work handed back meanwhile
            # waits for one frame, not for a whole message.
            amqp_connection.blocking_read(timeout)
        except TimeoutError:
            connection.heartbeat_check()
        self.run(channel)

    def _woken(self) -> None:
        with suppress(BlockingIOError):
            while self._wake.recv(4096):
                pass

    def close(self) -> None:
        self._waker.close()
        self._wake.close()


def _buffered(transport: Any) -> bool:
    """Whether py-amqp (or TLS) holds bytes from the broker not parsed yet:
    the socket may then have nothing more to read."""
    pending = getattr(transport.sock, "pending", None)
    return bool(transport._read_buffer) or bool(pending is not None and pending())


def _readable(sock: socket.socket) -> bool:
    """Whether the broker has sent bytes that wait on ``sock``."""
    ready, _, _ = select.select([sock], [], [], 0)
    return bool(ready)


@dataclass(frozen=True)
class _Held:
    """A request message held back to be answered with others: one request,
    or a batch of them (``batch``), which is answered with one message."""

    envelopes: list[Envelope]
    message: KombuMessage
    batch: bool

    def encode(self, replies: list[bytes | None]) -> bytes | None:
        """The reply message's body; None (no reply) if its caller gave up."""
        if not self.batch:
            return replies[0]
        if any(reply is None for reply in replies):
            return None
        return b'{"replies":[' + b",".join(cast(list[bytes], replies)) + b"]}"


def _gave_up(envelope: Envelope) -> bool:
    """Whether the caller of a request has stopped waiting for its reply."""
    return float(envelope.headers.get(DEADLINE_HEADER, "inf")) < time.time()


class _ReplyChannel:
    """One caller thread's connection: it publishes that thread's requests
    and consumes their replies by direct reply-to."""

    def __init__(self, url: str) -> None:
        self.connection = Connection(url, connect_timeout=5)
        self.connection.ensure_connection(max_retries=1)
        _read_ahead(self.connection)
        self.channel = self.connection.channel()
        self.writes = _Writes(self.channel)
        self.declared: set[str] = set()
        """Services whose request queue this connection has declared."""
        self.awaiting: set[str] = set()
        self.replies: dict[str, bytes] = {}
        self.channel.basic_consume(REPLY_TO, no_ack=True, callback=self._on_reply)

    def _on_reply(self, message: Any) -> None:
        correlation_id = message.properties.get("correlation_id")
        # A reply that comes after its caller gave up is dropped, not kept.
        if correlation_id in self.awaiting:
            self.replies[correlation_id] = message.body

    def wait(self, pending: set[str], deadline: float) -> None:
        """Take replies in until every one of ``pending`` is, or until
        ``deadline`` (on the monotonic clock)."""
        connection = self.channel.connection
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                connection.drain_events(timeout=remaining)
            except TimeoutError:
                return
            pending.difference_update(self.replies)

    def close(self) -> None:
        self.connection.release()


@dataclass
class _Sent:
    """Requests published together, and what their replies are awaited by."""

    requests: list[tuple[str, Envelope]]
    timeout: float
    deadline: float
    """When their caller stops waiting (on the monotonic clock)."""
    channel: _ReplyChannel | None = None
    slots: list[tuple[str, int | None]] = field(default_factory=list)
    """For each request, the correlation id of the message it went in, and
    its place in that message if it is a batch."""
    failure: InfrastructureUnavailable | None = None


def _request_body(envelopes: list[Envelope]) -> dict[str, Any]:
    """One request, or a batch of them (each with its headers)."""
    if len(envelopes) == 1:
        return {"message_type": envelopes[0].message_type, "body": envelopes[0].body}
    return {
        "batch": [
            {"message_type": e.message_type, "body": e.body, "headers": e.headers}
            for e in envelopes
        ]
    }


def _outcome(reply: dict[str, Any]) -> Any | OrdersysError:
    """The result in a decoded reply, or its error as the typed exception."""
    if reply.get("error") is not None:
        return error_from_dict(reply["error"])
    return reply.get("result")


class KombuTransport(Transport):
    """The port on RabbitMQ: a direct exchange ``<prefix>.commands`` with a
    durable queue ``<prefix>.<service>.commands`` per service, replies by direct
    reply-to, and a topic exchange ``<prefix>.events`` with a durable queue
    ``<prefix>.<queue>`` per subscriber. A request to a service this transport
    serves itself is answered in process, by the same handler."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ordersys",
        prefetch: int = 20,
        request_concurrency: int = 8,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.prefetch = prefetch
        self.request_concurrency = request_concurrency
        """Queries a service answers at once, each on a thread of its pool
        (in flight, at most ``prefetch``)."""
        self.address = address_of(url)
        self.commands = Exchange(f"{prefix}.commands", type="direct", durable=True)
        self.events = Exchange(f"{prefix}.events", type="topic", durable=True)
        self.dead_letters = Exchange(
            f"{prefix}.dead-letters", type="direct", durable=True
        )
        self._served: dict[str, RequestHandler] = {}
        self._queues: dict[str, Queue] = {}
        self._local = threading.local()
        self._channels_lock = threading.Lock()
        self._channels: list[_ReplyChannel] = []
        self._publisher_lock = threading.Lock()
        self._publisher: Connection | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pools: list[tuple[ThreadPoolExecutor, _Handback]] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> KombuTransport:
        """The transport ``settings`` describe (broker, prefix, concurrency)."""
        return cls(
            settings.rabbitmq_url,
            prefix=settings.messaging_prefix,
            request_concurrency=settings.request_concurrency,
        )

    def _unavailable(self, error: Exception) -> InfrastructureUnavailable:
        return InfrastructureUnavailable(
            "RabbitMQ", self.address, str(error) or repr(error)
        )

    def broker(self) -> Broker:
        return Broker(self.url, self.events.name)

    def service_queue(self, service: str) -> Queue:
        """A service's request queue; what it cannot take goes to its DLQ."""
        queue = self._queues.get(service)
        if queue is None:
            name = f"{self.prefix}.{service}.commands"
            queue = self._queues[service] = Queue(
                name,
                exchange=self.commands,
                routing_key=service,
                durable=True,
                queue_arguments={
                    "x-dead-letter-exchange": self.dead_letters.name,
                    "x-dead-letter-routing-key": name,
                },
            )
        return queue

    def is_served(self, service: str) -> bool:
        """Whether the service's request queue has a consumer (told apart from
        a slow service by the broker, in milliseconds)."""
        if service in self._served:
            return True
        try:
            with Connection(self.url, connect_timeout=2) as connection:
                channel = connection.channel()
                queue = self.service_queue(service).name
                _, _, consumers = channel.queue_declare(queue, passive=True)
        except Exception:
            return False  # no queue (the service never ran), or no broker
        return bool(consumers)

    def service_dlq(self, service: str) -> Queue:
        name = f"{self.prefix}.{service}.commands"
        return Queue(
            f"{name}.dlq", exchange=self.dead_letters, routing_key=name, durable=True
        )

    def _reply_channel(self) -> _ReplyChannel:
        channel: _ReplyChannel | None = getattr(self._local, "channel", None)
        if channel is None:
            channel = _ReplyChannel(self.url)
            self._local.channel = channel
            with self._channels_lock:
                self._channels.append(channel)
        return channel

    def _drop(self, channel: _ReplyChannel) -> None:
        """Close a suspect connection: this thread's next request opens a new one."""
        channel.close()
        if getattr(self._local, "channel", None) is channel:
            self._local.channel = None
        with self._channels_lock:
            if channel in self._channels:
                self._channels.remove(channel)

    @staticmethod
    @contextmanager
    def _client_span(service: str, envelope: Envelope) -> Iterator[None]:
        """The span of a request, put into its headers. The envelope carries
        the span it was made in, which is the parent even when the call runs
        on another thread (an executor's, say)."""
        with span(
            f"call {service} {envelope.message_type}",
            envelope.headers,
            kind=SpanKind.CLIENT,
            correlation_id=envelope.headers.get("correlation_id", ""),
        ):
            inject_into(envelope.headers)
            yield

    def call(self, service: str, envelope: Envelope, timeout: float) -> Any:
        with self._client_span(service, envelope):
            handler = self._served.get(service)
            if handler is not None:
                return result_of(reply_from(handler, envelope))
            [outcome] = self._round_trip([(service, envelope)], timeout)
            if isinstance(outcome, OrdersysError):
                raise outcome
            return outcome

    def call_many(
        self,
        requests: Sequence[tuple[str, Envelope]],
        timeout: float,
        *,
        commands: bool = False,
    ) -> list[Any | OrdersysError]:
        """All the requests to other processes go out in one write on this
        thread's connection (with ``commands``, a service's several in one
        message), then those to services served here are answered in
        process, then the others' replies are taken in as they come. Each
        request's client span covers its sending, not the wait."""
        outcomes: list[Any | OrdersysError] = [None] * len(requests)
        remote: list[int] = []
        for n, (service, envelope) in enumerate(requests):
            # A span per request, for its headers: the handler's span becomes
            # its child. The wait for replies is the batch's, not the request's.
            with self._client_span(service, envelope):
                pass
            if service not in self._served:
                remote.append(n)
        sent = self._send([requests[n] for n in remote], timeout, batch=commands)
        for n, outcome in answered_here(self._served, requests).items():
            outcomes[n] = outcome
        for n, outcome in zip(remote, self._receive(sent), strict=True):
            outcomes[n] = outcome
        return outcomes

    def _round_trip(
        self, requests: list[tuple[str, Envelope]], timeout: float
    ) -> list[Any | OrdersysError]:
        return self._receive(self._send(requests, timeout))

    def _send(
        self,
        requests: list[tuple[str, Envelope]],
        timeout: float,
        *,
        batch: bool = False,
    ) -> _Sent:
        """Publish ``requests`` (already traced) at once on this thread's
        connection; with ``batch``, a service's requests in one message when
        there are several (answered in order, with one message)."""
        sent = _Sent(requests, timeout, time.monotonic() + timeout)
        if not requests:
            return sent
        deadline = time.time() + timeout
        by_service: dict[str, list[int]] = {}
        for n, (service, _) in enumerate(requests):
            by_service.setdefault(service, []).append(n)
        groups = [
            (service, part)
            for service, indexes in by_service.items()
            for part in ([indexes] if batch else [[n] for n in indexes])
        ]
        # Encoded first: a body that cannot be is the caller's bug, not the broker's.
        messages = [
            (
                service,
                indexes,
                _encode(_request_body([requests[n][1] for n in indexes])),
            )
            for service, indexes in groups
        ]
        sent.slots = [("", None)] * len(requests)
        try:
            sent.channel = channel = self._reply_channel()
            for service in by_service:
                if service not in channel.declared:
                    self.service_queue(service)(channel.channel).declare()
                    channel.declared.add(service)
            with channel.writes.gathered():
                for service, indexes, body in messages:
                    single = requests[indexes[0]][1] if len(indexes) == 1 else None
                    correlation_id = (
                        single.headers.get("message_id", "") if single else ""
                    )
                    if not correlation_id or correlation_id in channel.awaiting:
                        correlation_id = str(uuid.uuid4())
                    channel.awaiting.add(correlation_id)
                    for place, n in enumerate(indexes):
                        sent.slots[n] = (correlation_id, None if single else place)
                    message = amqp.Message(
                        body,
                        content_type=JSON,
                        content_encoding="utf-8",
                        # A deadline, not a TTL: the queue would dead-letter an
                        # expired request, and a service that was away is no poison.
                        application_headers={
                            **(single.headers if single else {}),
                            DEADLINE_HEADER: deadline,
                        },
                        reply_to=REPLY_TO,
                        correlation_id=correlation_id,
                        delivery_mode=1,
                    )
                    _publish(channel.channel, self.commands.name, service, message)
        except Exception as e:
            sent.failure = self._unavailable(e)
        return sent

    def _receive(self, sent: _Sent) -> list[Any | OrdersysError]:
        """The outcome of each request ``sent``, once all replies are in or
        its deadline has passed."""
        channel = sent.channel
        correlation_ids = {c for c, _ in sent.slots if c}
        try:
            if channel is not None and sent.failure is None:
                channel.wait(set(correlation_ids), sent.deadline)
        except Exception as e:
            sent.failure = self._unavailable(e)
        replies: dict[str, Any] = {}
        if channel is not None:
            channel.awaiting.difference_update(correlation_ids)
            for correlation_id in correlation_ids:
                reply = channel.replies.pop(correlation_id, None)
                if reply is not None:
                    replies[correlation_id] = orjson.loads(reply)
            if sent.failure is not None:
                self._drop(channel)
        outcomes: list[Any | OrdersysError] = []
        for (service, envelope), (correlation_id, place) in zip(
            sent.requests, sent.slots, strict=True
        ):
            reply = replies.get(correlation_id)
            if reply is not None:
                outcomes.append(
                    _outcome(reply if place is None else reply["replies"][place])
                )
            elif sent.failure is not None:
                outcomes.append(sent.failure)
            else:
                outcomes.append(
                    RequestTimeout(
                        f"{service} did not reply to {envelope.message_type} "
                        f"within {sent.timeout}s",
                        service=service,
                    )
                )
        return outcomes

    def serve(self, service: str, handler: RequestHandler) -> None:
        """Answer ``service``'s requests: those ``handler`` lets be answered
        concurrently on a pool of :attr:`request_concurrency` threads, the
        others in order on the consuming thread, which writes every reply."""
        # Replies and their requests' acks go out in one write per connection.
        writes: WeakKeyDictionary[Any, _Writes] = WeakKeyDictionary()

        def answer_all(
            answers: Sequence[tuple[KombuMessage, bytes | None]], channel: Any
        ) -> None:
            """Reply (unless a reply is None) and ack, on the consuming thread."""
            gathering = writes.get(channel)
            if gathering is None:
                gathering = writes[channel] = _Writes(channel)
            with gathering.gathered():
                for message, reply in answers:
                    if message.channel is not channel:
                        continue  # taken on a lost connection: delivered again
                    reply_to = message.properties.get("reply_to")
                    if reply_to and reply is not None:
                        _publish(
                            channel,
                            "",
                            reply_to,
                            amqp.Message(
                                reply,
                                content_type=JSON,
                                content_encoding="utf-8",
                                correlation_id=message.properties.get("correlation_id"),
                            ),
                        )
                    message.ack()

        def answer(message: KombuMessage, reply: bytes | None, channel: Any) -> None:
            answer_all([(message, reply)], channel)

        def answer_held(held: list[_Held], channel: Any) -> None:
            """The commands taken in together, run together if ``handler``
            can (see :func:`~ordersys.transport.replies_from`), else one at a
            time; those whose caller gave up are acked unanswered."""
            held = [h for h in held if h.message.channel is channel]
            if not hasattr(handler, "many"):
                for request in held:
                    each = [reply_for(e) for e in request.envelopes]
                    answer(request.message, request.encode(each), channel)
                return
            live = [h for h in held if not _gave_up(h.envelopes[0])]
            replies = iter(
                replies_from(handler, [e for h in live for e in h.envelopes])
            )
            answered = {
                id(h): h.encode([_encode(next(replies)) for _ in h.envelopes])
                for h in live
            }
            answer_all([(h.message, answered.get(id(h))) for h in held], channel)

        handback = _Handback(answer_held)
        pool = ThreadPoolExecutor(
            self.request_concurrency, thread_name_prefix=f"{service}-queries"
        )
        self._pools.append((pool, handback))

        def reply_for(envelope: Envelope) -> bytes | None:
            if _gave_up(envelope):
                return None  # its caller gave up: carrying it out helps no one
            return _encode(reply_from(handler, envelope))

        def in_pool(envelope: Envelope, message: KombuMessage) -> None:
            reply: bytes | None = None
            try:
                reply = reply_for(envelope)  # it may have waited for a thread
            except Exception:
                logger.exception("%s: %s not answered", service, envelope.message_type)
            finally:
                handback.put(partial(answer, message, reply))

        def on_request(body: Any, message: KombuMessage, producer: Producer) -> None:
            if self._stopping.is_set():
                message.requeue()  # for another replica, or this one's restart
                return
            envelopes = self._envelopes(service, body, message, producer)
            if not envelopes:
                return
            if "batch" not in body and answers_concurrently(
                handler, envelopes[0].message_type
            ):
                handback.expect()
                pool.submit(in_pool, envelopes[0], message)
            else:
                # Answered once everything delivered so far is in, together.
                handback.hold(_Held(envelopes, message, batch="batch" in body))

        self._served[service] = handler
        self._consume(
            f"serve-{service}",
            [self.service_queue(service)],
            on_request,
            declare=[self.service_dlq(service)],
            json_only=True,
            handback=handback,
        )

    def _envelopes(
        self, service: str, body: Any, message: KombuMessage, producer: Producer
    ) -> list[Envelope]:
        """The requests ``message`` holds (a batch holds several, each with
        its own headers); none for a malformed one, which is dead-lettered."""
        try:
            headers = _headers(message)
            if "batch" in body:
                if not body["batch"]:
                    raise KeyError("batch")
                return [
                    Envelope(r["message_type"], r["body"], {**headers, **r["headers"]})
                    for r in body["batch"]
                ]
            return [Envelope(body["message_type"], body["body"], headers)]
        except (KeyError, TypeError):
            reason = f"malformed request: {str(body)[:200]!r}"
            logger.error("%s: dead-lettered: %s", service, reason)
            queue = self.service_queue(service).name
            producer.publish(
                message.body,
                exchange=self.dead_letters,
                routing_key=queue,
                headers={**(message.headers or {}), ERROR_HEADER: reason},
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                delivery_mode=2,
            )
            message.ack()
            return []

    def publish(self, routing_key: str, envelope: Envelope) -> None:
        with self._publisher_lock:
            try:
                if self._publisher is None:
                    self._publisher = Connection(self.url, connect_timeout=5)
                producer = Producer(self._publisher.default_channel)
                producer.publish(
                    {"message_type": envelope.message_type, "body": envelope.body},
                    exchange=self.events,
                    routing_key=routing_key,
                    declare=[self.events],
                    headers=envelope.headers,
                    serializer="json",
                    delivery_mode=2,
                    retry=True,
                    retry_policy={"max_retries": 3},
                )
            except Exception as e:
                if self._publisher is not None:
                    self._publisher.release()
                    self._publisher = None
                raise self._unavailable(e) from None

    def subscribe(
        self, queue: str, patterns: Sequence[str], handler: EventHandler
    ) -> None:
        bindings = [
            Queue(
                f"{self.prefix}.{queue}",
                exchange=self.events,
                routing_key=pattern,
                durable=True,
            )
            for pattern in patterns
        ]

        def on_event(body: Any, message: KombuMessage, _: Producer) -> None:
            try:
                envelope = Envelope(
                    body["message_type"], body["body"], _headers(message)
                )
                with handling(envelope):
                    handler(envelope)
            except Exception:
                logger.exception("%s: %s not handled", queue, body.get("message_type"))
                message.reject(requeue=False)
                return
            message.ack()

        self._consume(f"subscribe-{queue}", bindings, on_event)

    def _consume(
        self,
        name: str,
        queues: list[Queue],
        callback: Callable[[Any, KombuMessage, Producer], None],
        declare: Sequence[Queue] = (),
        *,
        json_only: bool = False,
        handback: _Handback | None = None,
    ) -> None:
        self._threads.append(
            consume_in_thread(
                self.url,
                name,
                queues,
                callback,
                self.prefetch,
                self._stopping,
                declare=declare,
                json_only=json_only,
                handback=handback,
            )
        )

    def close(self) -> None:
        """Stop consuming; a service answers the requests its pool runs
        first (for :data:`STOP_GRACE` at most), and gives back those it has
        not begun."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(STOP_GRACE + 1)
        for pool, handback in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)
            handback.close()
        self._pools.clear()
        with self._publisher_lock:
            if self._publisher is not None:
                self._publisher.release()
                self._publisher = None
        self._served.clear()
        with self._channels_lock:
            channels, self._channels = self._channels, []
            self._local = threading.local()  # a thread calling again connects anew
        for channel in channels:
            channel.close()
