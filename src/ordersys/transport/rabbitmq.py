"""The transport over RabbitMQ, through kombu (the ``[rabbitmq]`` extra).

A direct exchange ``<prefix>.commands`` with a durable queue per service,
replies by direct reply-to, and a topic exchange ``<prefix>.events`` with a
durable queue per subscriber. A request carries its caller's deadline: a
service that takes it up after its caller gave up drops it unanswered. Consumers
whose broker is away wait for it (:mod:`ordersys.outages`), at start too.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from ordersys.errors import (
    InfrastructureUnavailable,
    OrdersysError,
    RequestTimeout,
)
from ordersys.extras import needs
from ordersys.observability.tracing import SpanKind, inject_into, span
from ordersys.outages import Outages, server_of
from ordersys.settings import address_of
from ordersys.transport import (
    ERROR_HEADER,
    Broker,
    Envelope,
    EventHandler,
    RequestHandler,
    Transport,
    handling,
    reply_from,
    result_of,
)

with needs("rabbitmq", "KombuTransport"):
    from kombu.connection import Connection
    from kombu.entity import Exchange, Queue
    from kombu.message import Message as KombuMessage
    from kombu.messaging import Consumer, Producer

logger = logging.getLogger("ordersys.transport")

REPLY_TO = "amq.rabbitmq.reply-to"
DEADLINE_HEADER = "x-ordersys-deadline"
"""When the caller of a request stops waiting for its reply (Unix time)."""


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
) -> threading.Thread:
    """Consume ``queues`` in a daemon thread until ``stopping`` is set,
    declaring ``declare`` too (a dead-letter queue, say) on each connection.
    ``callback(body, message, producer)`` acknowledges each message itself.

    A broker that is not there yet, or goes away, is waited for (reported
    through ``outages``) for as long as it takes. Returns once consuming has
    begun, or once the first attempt has failed: the thread keeps trying."""
    attempted = threading.Event()
    thread = threading.Thread(
        target=_consume_forever,
        args=(url, queues, declare, callback, prefetch, stopping, attempted),
        kwargs={"outages": outages or Outages(name)},
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
) -> None:
    while not stopping.is_set():
        try:
            with Connection(
                url, heartbeat=10, connect_timeout=CONNECT_TIMEOUT
            ) as connection:
                channel = connection.channel()
                for queue in declare:
                    queue(channel).declare()
                channel.basic_qos(0, prefetch, False)
                producer = Producer(channel)
                consumer = Consumer(
                    channel,
                    queues=queues,
                    callbacks=[partial(_with_producer, callback, producer)],
                    on_decode_error=partial(_undecodable, callback, producer),
                )
                with consumer:
                    outages.over("RabbitMQ")
                    attempted.set()
                    while not stopping.is_set():
                        try:
                            connection.drain_events(timeout=0.5)
                        except TimeoutError:
                            connection.heartbeat_check()
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

    def broker(self) -> Broker:
        return Broker(self.url, self.events.name)

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

    def is_served(self, service: str) -> bool:
        """Whether the service's request queue has a consumer (told apart from
        a slow service by the broker, in milliseconds)."""
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
                # A deadline, not a TTL: the queue would dead-letter an
                # expired request, and a service that was away is no poison.
                headers={**envelope.headers, DEADLINE_HEADER: time.time() + timeout},
                serializer="json",
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
            if float(envelope.headers.get(DEADLINE_HEADER, "inf")) < time.time():
                message.ack()  # its caller gave up: carrying it out helps no one
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

        self._consume(
            f"serve-{service}",
            [self.service_queue(service)],
            on_request,
            declare=[self.service_dlq(service)],
        )

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
