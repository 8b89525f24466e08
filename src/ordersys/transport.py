"""The bus transport: how commands, queries and events cross process boundaries.

Two kinds of traffic, one port:

* **requests** (commands and queries): ``call(service, envelope)`` delivers an
  envelope to the one consumer group serving ``service`` and waits, bounded, for
  its reply; ``serve(service, handler)`` answers them;
* **events**: ``publish(routing_key, envelope)`` hands an event to every queue
  bound to a matching pattern (AMQP topic rules: ``*`` is one word, ``#`` zero or
  more); ``subscribe(queue, patterns, handler)`` consumes one queue.

:class:`MemoryTransport` does this inside one process (the embedded mode and
unit tests); :class:`KombuTransport` does it over RabbitMQ. Both are held to
one contract suite (``tests/contracts/transport.py``). :func:`serve_bus` and
:class:`RpcSender` put an ``ordersys`` command bus on either side of a transport.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.message import Message as KombuMessage
from kombu.messaging import Consumer, Producer
from opentelemetry.trace import SpanKind
from pydantic_core import to_jsonable_python

from ordersys.bus import MessageBus
from ordersys.errors import (
    HandlerNotFound,
    InfrastructureUnavailable,
    OrdersysError,
    RequestTimeout,
    error_from_dict,
)
from ordersys.observability.logs import log_context
from ordersys.observability.tracing import (
    current_carrier,
    inject_into,
    span,
    trace_fields,
)
from ordersys.settings import address_of

logger = logging.getLogger("ordersys.transport")

REPLY_TO = "amq.rabbitmq.reply-to"
ERROR_HEADER = "x-ordersys-error"
"""Why a dead letter is one."""


@dataclass(frozen=True)
class Envelope:
    """A message on the wire: its type, its JSON body and its headers
    (correlation id, message id, trace context)."""

    message_type: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def new(cls, message_type: str, body: dict[str, Any], **headers: str) -> Envelope:
        """A new envelope; inside a handler it carries on the correlation id and
        trace context of the message being handled."""
        # The current span, if any, is the parent of whatever handles this.
        for key, value in [*current_carrier().items(), *_handling.get().items()]:
            headers.setdefault(key, value)
        headers.setdefault("message_id", str(uuid.uuid4()))
        headers.setdefault("correlation_id", headers["message_id"])
        return cls(message_type, body, headers)


PROPAGATED = ("correlation_id", "traceparent", "tracestate")
"""Headers that follow a unit of work from message to message (W3C trace context)."""

_handling: ContextVar[dict[str, str]] = ContextVar("ordersys_handling", default={})  # noqa: B039


@contextmanager
def handling(envelope: Envelope) -> Iterator[None]:
    """Handle ``envelope`` in its context: messages sent meanwhile carry on its
    correlation id and trace context, and log lines name them."""
    carried = {k: envelope.headers[k] for k in PROPAGATED if k in envelope.headers}
    token = _handling.set(carried)
    correlation_id = carried.get("correlation_id", "")
    try:
        with (
            span(
                f"handle {envelope.message_type}",
                carried,
                kind=SpanKind.SERVER,
                correlation_id=correlation_id,
            ) as current,
            log_context(
                message_type=envelope.message_type,
                correlation_id=correlation_id,
                **trace_fields(current),
                **_order_of(envelope),
            ),
        ):
            yield
    finally:
        _handling.reset(token)


def _order_of(envelope: Envelope) -> dict[str, str]:
    """``{"order_id": ...}`` when the message is about an order, for log lines."""
    order_id = (
        envelope.body.get("order_id") if isinstance(envelope.body, dict) else None
    )
    if order_id is None and envelope.message_type.startswith("Order"):
        order_id = envelope.body.get("originator_id")
    return {"order_id": str(order_id)} if order_id else {}


RequestHandler = Callable[[Envelope], Any]
EventHandler = Callable[[Envelope], None]


def reply_from(handler: RequestHandler, envelope: Envelope) -> dict[str, Any]:
    """Run ``handler`` and turn its outcome into a reply body."""
    try:
        with handling(envelope):
            return {"result": to_jsonable_python(handler(envelope))}
    except OrdersysError as e:
        return {"error": e.to_dict()}
    except Exception as e:
        logger.exception("%s failed", envelope.message_type)
        return {
            "error": OrdersysError(f"{envelope.message_type} failed: {e}").to_dict()
        }


def result_of(reply: dict[str, Any]) -> Any:
    """The result in a reply body, or its error raised as the typed exception."""
    if reply.get("error") is not None:
        raise error_from_dict(reply["error"])
    return reply.get("result")


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: words split by dots, ``*`` one word, ``#`` any."""
    return _words_match(pattern.split("."), routing_key.split("."))


def _words_match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    if pattern[0] == "#":
        return _words_match(pattern[1:], words) or (
            bool(words) and _words_match(pattern, words[1:])
        )
    if not words or pattern[0] not in ("*", words[0]):
        return False
    return _words_match(pattern[1:], words[1:])


class Transport(ABC):
    """The bus-transport port."""

    @abstractmethod
    def call(self, service: str, envelope: Envelope, timeout: float) -> Any:
        """Send a request to ``service`` and return the reply's result; raise
        the typed error it replied with, or :class:`RequestTimeout`."""

    @abstractmethod
    def serve(self, service: str, handler: RequestHandler) -> None:
        """Answer requests to ``service`` with ``handler`` (in the background)."""

    @abstractmethod
    def publish(self, routing_key: str, envelope: Envelope) -> None:
        """Hand an event to every queue bound to a pattern matching ``routing_key``."""

    @abstractmethod
    def subscribe(
        self, queue: str, patterns: Sequence[str], handler: EventHandler
    ) -> None:
        """Consume ``queue``, bound to ``patterns``, with ``handler`` (in the
        background). A handler that raises leaves the event unacknowledged."""

    @abstractmethod
    def close(self) -> None:
        """Stop consuming and release connections."""


class MemoryTransport(Transport):
    """Everything in this process: requests call their handler directly, and
    events are handed to the matching queues' handlers as they are published."""

    def __init__(self) -> None:
        self._services: dict[str, RequestHandler] = {}
        self._queues: dict[str, tuple[list[str], EventHandler]] = {}
        self._lock = threading.Lock()

    def call(self, service: str, envelope: Envelope, timeout: float) -> Any:
        handler = self._services.get(service)
        if handler is None:
            raise RequestTimeout(
                f"{service} did not reply to {envelope.message_type} within "
                f"{timeout}s: no instance of it is running",
                service=service,
            )
        return result_of(reply_from(handler, envelope))

    def serve(self, service: str, handler: RequestHandler) -> None:
        self._services[service] = handler

    def publish(self, routing_key: str, envelope: Envelope) -> None:
        with self._lock:
            queues = list(self._queues.items())
        for queue, (patterns, handler) in queues:
            if any(topic_matches(p, routing_key) for p in patterns):
                try:
                    with handling(envelope):
                        handler(envelope)
                except Exception:
                    logger.exception("%s: %s not handled", queue, envelope.message_type)

    def subscribe(
        self, queue: str, patterns: Sequence[str], handler: EventHandler
    ) -> None:
        with self._lock:
            self._queues[queue] = (list(patterns), handler)

    def close(self) -> None:
        self._services.clear()
        self._queues.clear()


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


def consume_in_thread(
    url: str,
    name: str,
    queues: list[Queue],
    callback: Callback,
    prefetch: int,
    stopping: threading.Event,
) -> threading.Thread:
    """Consume ``queues`` in a daemon thread until ``stopping`` is set,
    reconnecting after a lost connection; returns once consuming has begun.
    ``callback(body, message, producer)`` acknowledges each message itself."""
    ready = threading.Event()
    thread = threading.Thread(
        target=_consume_forever,
        args=(url, queues, callback, prefetch, stopping, ready),
        name=name,
        daemon=True,
    )
    thread.start()
    if not ready.wait(10):
        address = address_of(url)
        raise InfrastructureUnavailable(
            "RabbitMQ", address, f"{name} could not start consuming"
        )
    return thread


def _consume_forever(
    url: str,
    queues: list[Queue],
    callback: Callback,
    prefetch: int,
    stopping: threading.Event,
    ready: threading.Event,
) -> None:
    while not stopping.is_set():
        try:
            with Connection(url, heartbeat=10) as connection:
                channel = connection.channel()
                channel.basic_qos(0, prefetch, False)
                producer = Producer(channel)
                consumer = Consumer(
                    channel,
                    queues=queues,
                    callbacks=[partial(_with_producer, callback, producer)],
                    on_decode_error=partial(_undecodable, callback, producer),
                )
                with consumer:
                    ready.set()
                    while not stopping.is_set():
                        try:
                            connection.drain_events(timeout=0.5)
                        except TimeoutError:
                            connection.heartbeat_check()
        except Exception as e:
            if stopping.is_set():
                return
            logger.warning("consumer lost its connection (%s); reconnecting", e)
            stopping.wait(1.0)


class _ReplyChannel:
    """One connection of one caller thread, consuming direct reply-to."""

    def __init__(self, url: str) -> None:
        self.connection = Connection(url, connect_timeout=5)
        self.connection.ensure_connection(max_retries=1)
        self.channel = self.connection.channel()
        self.producer = Producer(self.channel)
        self.awaiting: set[str] = set()
        self.replies: dict[str, dict[str, Any]] = {}
        self.consumer = Consumer(
            self.channel,
            queues=[Queue(REPLY_TO, no_declare=True)],
            no_ack=True,
            callbacks=[self._on_reply],
        )
        self.consumer.consume()

    def _on_reply(self, body: Any, message: KombuMessage) -> None:
        correlation_id = str(message.properties.get("correlation_id"))
        # A reply that comes after its caller gave up is dropped, not kept.
        if correlation_id in self.awaiting:
            self.replies[correlation_id] = body

    def close(self) -> None:
        self.connection.release()


class KombuTransport(Transport):
    """The port on RabbitMQ: a direct exchange ``<prefix>.commands`` with a
    durable queue ``<prefix>.<service>.commands`` per service, replies by direct
    reply-to, and a topic exchange ``<prefix>.events`` with a durable queue
    ``<prefix>.<queue>`` per subscriber."""

    def __init__(
        self, url: str, *, prefix: str = "ordersys", prefetch: int = 20
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.prefetch = prefetch
        self.address = address_of(url)
        self.commands = Exchange(f"{prefix}.commands", type="direct", durable=True)
        self.events = Exchange(f"{prefix}.events", type="topic", durable=True)
        self.dead_letters = Exchange(
            f"{prefix}.dead-letters", type="direct", durable=True
        )
        self._local = threading.local()
        self._publisher_lock = threading.Lock()
        self._publisher: Connection | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def _unavailable(self, error: Exception) -> InfrastructureUnavailable:
        return InfrastructureUnavailable(
            "RabbitMQ", self.address, str(error) or repr(error)
        )

    def service_queue(self, service: str) -> Queue:
        """A service's request queue; what it cannot take goes to its DLQ."""
        name = f"{self.prefix}.{service}.commands"
        return Queue(
            name,
            exchange=self.commands,
            routing_key=service,
            durable=True,
            queue_arguments={
                "x-dead-letter-exchange": self.dead_letters.name,
                "x-dead-letter-routing-key": name,
            },
        )

    def service_dlq(self, service: str) -> Queue:
        name = f"{self.prefix}.{service}.commands"
        return Queue(
            f"{name}.dlq", exchange=self.dead_letters, routing_key=name, durable=True
        )

    def _reply_channel(self) -> _ReplyChannel:
        channel: _ReplyChannel | None = getattr(self._local, "channel", None)
        if channel is None:
            try:
                channel = _ReplyChannel(self.url)
            except Exception as e:
                raise self._unavailable(e) from None
            self._local.channel = channel
        return channel

    def call(self, service: str, envelope: Envelope, timeout: float) -> Any:
        # The envelope carries the span it was made in, which is the parent
        # even when the call runs on another thread (an executor's, say).
        with span(
            f"call {service} {envelope.message_type}",
            envelope.headers,
            kind=SpanKind.CLIENT,
            correlation_id=envelope.headers.get("correlation_id", ""),
        ):
            inject_into(envelope.headers)
            return self._call(service, envelope, timeout)

    def _call(self, service: str, envelope: Envelope, timeout: float) -> Any:
        reply_channel = self._reply_channel()
        correlation_id = envelope.headers.get("message_id") or str(uuid.uuid4())
        reply_channel.awaiting.add(correlation_id)
        try:
            reply_channel.producer.publish(
                {"message_type": envelope.message_type, "body": envelope.body},
                exchange=self.commands,
                routing_key=service,
                declare=[self.service_queue(service)],
                reply_to=REPLY_TO,
                correlation_id=correlation_id,
                headers=envelope.headers,
                serializer="json",
                expiration=timeout,
                delivery_mode=1,
            )
            deadline = time.monotonic() + timeout
            while correlation_id not in reply_channel.replies:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RequestTimeout(
                        f"{service} did not reply to {envelope.message_type} "
                        f"within {timeout}s",
                        service=service,
                    )
                try:
                    reply_channel.connection.drain_events(timeout=remaining)
                except TimeoutError:
                    continue
        except OrdersysError:
            raise
        except Exception as e:
            # The connection is suspect: the next call opens a new one.
            reply_channel.close()
            self._local.channel = None
            raise self._unavailable(e) from None
        finally:
            reply_channel.awaiting.discard(correlation_id)
        return result_of(reply_channel.replies.pop(correlation_id))

    def serve(self, service: str, handler: RequestHandler) -> None:
        with Connection(self.url, connect_timeout=5) as connection:
            self.service_dlq(service)(connection.default_channel).declare()

        def on_request(body: Any, message: KombuMessage, producer: Producer) -> None:
            try:
                envelope = Envelope(
                    body["message_type"], body["body"], _headers(message)
                )
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
                return
            reply = reply_from(handler, envelope)
            reply_to = message.properties.get("reply_to")
            if reply_to:
                producer.publish(
                    reply,
                    exchange="",
                    routing_key=reply_to,
                    correlation_id=message.properties.get("correlation_id"),
                    serializer="json",
                )
            message.ack()

        self._consume(f"serve-{service}", [self.service_queue(service)], on_request)

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
    ) -> None:
        self._threads.append(
            consume_in_thread(
                self.url, name, queues, callback, self.prefetch, self._stopping
            )
        )

    def close(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(5)
        with self._publisher_lock:
            if self._publisher is not None:
                self._publisher.release()
                self._publisher = None
        channel: _ReplyChannel | None = getattr(self._local, "channel", None)
        if channel is not None:
            channel.close()


def serve_bus(transport: Transport, service: str, *buses: MessageBus[Any]) -> None:
    """Answer ``service``'s requests by dispatching each on the bus that handles it
    (typically its command bus and its query bus)."""

    def handle(envelope: Envelope) -> Any:
        for bus in buses:
            message_class = bus.message_types.get(envelope.message_type)
            if message_class is not None:
                return bus.dispatch(message_class.parse(envelope.body))
        raise HandlerNotFound(
            f"{service} does not handle {envelope.message_type}",
            message_type=envelope.message_type,
        )

    transport.serve(service, handle)


class RpcSender:
    """A :class:`~ordersys.processes.CommandSender` over a transport. A command
    goes to the service that ``routes`` names for the first word of its type
    (``product.reserveInventory`` → ``routes["product"]``), or to the service
    named by that word itself."""

    def __init__(
        self,
        transport: Transport,
        timeout: float = 5.0,
        routes: dict[str, str] | None = None,
    ) -> None:
        self.transport = transport
        self.timeout = timeout
        self.routes = dict(routes or {})

    def service_for(self, message_type: str) -> str:
        word = message_type.split(".", 1)[0]
        return self.routes.get(word, word)

    def send(
        self, command_type: str, payload: dict[str, Any], command_id: uuid.UUID
    ) -> Any:
        envelope = Envelope.new(command_type, payload, message_id=str(command_id))
        return self.transport.call(
            self.service_for(command_type), envelope, self.timeout
        )
