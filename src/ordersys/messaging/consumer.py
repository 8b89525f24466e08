"""Consumers of integration events that never lose or double-apply one.

Each consuming service has one durable quorum queue bound to the events it
needs. A message is applied by the consumer's inbox (:mod:`ordersys.messaging.inbox`):
in one transaction of its record store (PostgreSQL) that first records the
message's identity (origin service and position, the message id) in
``ordersys_processed_messages``; the handler's effect commits with that record,
and the message is acknowledged only after the commit. A redelivered message
finds its record and changes nothing.

Messages delivered together are applied together: the consumer takes what
has arrived (up to ``batch_size``, gathering for at most ``GATHER`` seconds
after the first message), applies it in one transaction (one
statement records every id, then the handlers' effects, one commit) and then
acknowledges the lot with one ``basic.ack`` (``multiple``) of the last
delivery. If that transaction fails for any reason but an outage, the batch
is applied again one message at a time: the others apply, and only the one
that fails alone counts an attempt (below). A consumer killed before the ack
has its whole batch delivered again, where it finds the dedupe records.

A message that cannot be handled goes to the queue's dead-letter queue
(``<queue>.dlq``) with the reason in the ``x-ordersys-error`` header: at once if
it is malformed, of a type nobody handles, or does not fit its contract (see
:mod:`ordersys.messaging.contracts`); after ``max_attempts`` if its
handler keeps failing (it is retried with backoff before that). The quorum
queue's delivery limit dead-letters it as well should the consumer die each time.

A server that is down is not the message's fault: while PostgreSQL (or the
broker) cannot be reached, the consumer holds the message, unacknowledged,
and tries it again with backoff for as long as the outage lasts (see
:mod:`ordersys.outages`); none of those attempts counts toward its
``max_attempts``. Holding it, rather than requeueing it, keeps the broker's
delivery count (which a requeue raises) for the message's own failures.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from kombu.connection import Connection as KombuConnection
from kombu.entity import Exchange, Queue, binding
from kombu.message import Message as KombuMessage
from kombu.messaging import Consumer, Producer
from psycopg import sql

from ordersys.errors import InfrastructureUnavailable, InvalidInput
from ordersys.messages import Message
from ordersys.messaging.inbox import Handler, Inbox
from ordersys.outages import Outages, server_of
from ordersys.persistence.database import connect, creating_tables, ensure_schema
from ordersys.readmodels.records import RecordStore
from ordersys.readmodels.records_postgres import PostgresRecordStore
from ordersys.settings import Settings, address_of
from ordersys.transport import ERROR_HEADER, Envelope
from ordersys.transport.rabbitmq import CONNECT_TIMEOUT, Undecodable

__all__ = ["EventConsumer", "Handler", "queues_for", "registered_queues"]

logger = logging.getLogger("ordersys.consumer")

GATHER = 0.025
"""Seconds a batch may wait, from its first message, for more to join it.
Under load each transaction then carries tens of messages instead of one or
two (a commit costs the same for one row as for fifty); a lone message is
applied that much later, which no consumer of integration events notices."""

Delivery = tuple[Any, KombuMessage]
"""A message's decoded body (or :class:`Undecodable`) and the message."""


def dead_letter_exchange(prefix: str) -> Exchange:
    return Exchange(f"{prefix}.dead-letters", type="direct", durable=True)


def queues_for(
    prefix: str, queue: str, patterns: Sequence[str], max_attempts: int
) -> tuple[Queue, Queue]:
    """The consuming queue (quorum, bound to ``patterns``) and its DLQ."""
    events = Exchange(f"{prefix}.events", type="topic", durable=True)
    dead_letters = dead_letter_exchange(prefix)
    name = f"{prefix}.{queue}"
    consuming = Queue(
        name,
        bindings=[binding(events, routing_key=p) for p in patterns],
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": max_attempts,
            "x-dead-letter-exchange": dead_letters.name,
            "x-dead-letter-routing-key": name,
        },
    )
    dlq = Queue(f"{name}.dlq", exchange=dead_letters, routing_key=name, durable=True)
    return consuming, dlq


REGISTRY = "ordersys_consumer_queues"


def register_queue(conn: psycopg.Connection[Any], schema: str, queue: str) -> None:
    """Remember ``queue`` so that ``ordersys dlq`` can find its dead letters."""
    table = sql.Identifier(schema, REGISTRY)
    conn.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (queue text PRIMARY KEY)").format(table)
    )
    conn.execute(
        sql.SQL("INSERT INTO {} VALUES (%s) ON CONFLICT DO NOTHING").format(table),
        (queue,),
    )


def registered_queues(settings: Settings) -> list[str]:
    """Every consumer queue registered in the configured schema."""
    schema = settings.postgres_schema or "ordersys_consumers"
    table = sql.Identifier(schema, REGISTRY)
    with connect(settings) as conn:
        exists = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.{REGISTRY}",)
        ).fetchone()
        if not exists or not exists[0]:
            return []
        rows = conn.execute(
            sql.SQL("SELECT queue FROM {} ORDER BY queue").format(table)
        )
        return [row[0] for row in rows]


class EventConsumer(Inbox):
    """Consumes ``queue`` and applies each event exactly once, in ``store``
    (by default, the record store ``queue`` in ``schema`` of PostgreSQL); it
    closes the store when it stops. It applies up to ``batch_size`` messages
    in one transaction, with up to ``prefetch`` delivered ahead (more than
    ``batch_size``, so that the next batch arrives while one is applied)."""

    def __init__(
        self,
        settings: Settings,
        queue: str,
        handlers: Mapping[str, Handler],
        *,
        patterns: Sequence[str],
        prefix: str | None = None,
        prefetch: int = 100,
        batch_size: int = 50,
        max_attempts: int = 5,
        contracts: Mapping[str, type[Message]] | None = None,
        schema: str | None = None,
        store: RecordStore | None = None,
    ) -> None:
        prefix = prefix or settings.messaging_prefix
        registry = settings.postgres_schema or "ordersys_consumers"
        self.schema = schema or registry
        super().__init__(
            f"{prefix}.{queue}",
            handlers,
            store or PostgresRecordStore(settings, self.schema, queue),
            contracts=contracts,
            max_attempts=max_attempts,
        )
        self.settings = settings
        self.prefix = prefix
        self.prefetch = prefetch
        self.batch_size = min(batch_size, prefetch) if prefetch else batch_size
        self.queue, self.dlq = queues_for(prefix, queue, patterns, max_attempts)
        ensure_schema(settings, registry)
        with (
            creating_tables(settings, registry),
            connect(settings, autocommit=True) as conn,
        ):
            register_queue(conn, registry, self.name)
        self._attempts: dict[str, int] = {}
        self.outages = Outages(self.name)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Consume in a background thread, which declares the queues (and
        waits for the broker, if it is not there yet). Returns once consuming
        has begun, or once the first attempt has failed: the thread keeps
        trying."""
        self._stopping.clear()
        attempted = threading.Event()
        self._thread = threading.Thread(
            target=self._consume_forever, args=(attempted,), name=self.name, daemon=True
        )
        self._thread.start()
        attempted.wait(CONNECT_TIMEOUT * 2)

    def depths(self) -> dict[str, int]:
        """Messages waiting in the queue and in its dead-letter queue, as the
        broker counts them (for metrics; passive declares change nothing)."""
        with KombuConnection(self.settings.rabbitmq_url, connect_timeout=2) as conn:
            channel = conn.default_channel
            return {
                "waiting": channel.queue_declare(self.name, passive=True).message_count,
                "dead": channel.queue_declare(
                    self.dlq.name, passive=True
                ).message_count,
            }

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.close()

    def _consume_forever(self, attempted: threading.Event) -> None:
        url = self.settings.rabbitmq_url
        while not self._stopping.is_set():
            try:
                with KombuConnection(
                    url, heartbeat=10, connect_timeout=CONNECT_TIMEOUT
                ) as connection:
                    self._consume(connection, attempted)
            except Exception as e:
                attempted.set()
                if self._stopping.is_set():
                    return
                if server_of(e) == "RabbitMQ":
                    reason = str(e) or repr(e)
                    lost = InfrastructureUnavailable(
                        "RabbitMQ", address_of(url), reason
                    )
                    self.outages.wait(lost, self._stopping)
                else:
                    logger.exception("%s failed; consuming again", self.name)
                    self._stopping.wait(1.0)

    def _consume(self, connection: KombuConnection, attempted: threading.Event) -> None:
        channel = connection.channel()
        self.dlq(channel).declare()
        channel.basic_qos(0, self.prefetch, False)
        producer = Producer(channel)
        delivered: list[Delivery] = []

        def undecodable(message: KombuMessage, error: Exception) -> None:
            delivered.append((Undecodable(bytes(message.body), str(error)), message))

        consumer = Consumer(
            channel,
            queues=[self.queue],
            callbacks=[lambda body, message: delivered.append((body, message))],
            on_decode_error=undecodable,
        )
        with consumer:
            self.outages.over("RabbitMQ")
            attempted.set()
            while not self._stopping.is_set():
                try:
                    connection.drain_events(timeout=0.5)
                    gathered_by = time.monotonic() + GATHER
                    while delivered and len(delivered) < self.batch_size:
                        remaining = gathered_by - time.monotonic()
                        if remaining <= 0:
                            break
                        connection.drain_events(timeout=remaining)
                except TimeoutError:
                    connection.heartbeat_check()
                if delivered:
                    batch = delivered[:]
                    delivered.clear()
                    self._on_batch(batch, producer)

    def _on_batch(self, delivered: list[Delivery], producer: Producer) -> None:
        """Apply ``delivered``, dead-letter what cannot apply, requeue what is
        to be tried again, and acknowledge the rest with one ``basic.ack``."""
        done: list[KombuMessage] = []
        """Messages to acknowledge: applied, duplicates, dead-lettered."""
        batch: list[tuple[Envelope, KombuMessage]] = []
        for body, message in delivered:
            try:
                batch.append((self._envelope(body, message), message))
            except InvalidInput as e:
                self._dead_letter(message, producer, e.message)
                done.append(message)
        if batch and not self._apply(batch, producer, done):
            # Stopping: the rest stays unacknowledged, to be delivered again.
            for message in done:
                message.ack()
            return
        if done:
            # Every message of the batch is settled: those requeued are no
            # longer outstanding, so this acknowledges exactly the others.
            max(done, key=lambda message: int(message.delivery_tag)).ack(multiple=True)

    def _apply(
        self,
        batch: list[tuple[Envelope, KombuMessage]],
        producer: Producer,
        done: list[KombuMessage],
    ) -> bool:
        """Apply ``batch`` in one transaction, else one message at a time;
        False if the consumer is stopping (and left the rest)."""
        try:
            self._apply_through_outages([envelope for envelope, _ in batch], producer)
        except Exception as e:
            if self._stopping.is_set():
                return False
            if server_of(e) is not None:
                raise  # the broker went away meanwhile: the consumer reconnects
            if len(batch) > 1:
                return all(self._apply([one], producer, done) for one in batch)
            envelope, message = batch[0]
            if self._retry_or_dead_letter(envelope, message, producer, e):
                done.append(message)
            return True
        for envelope, message in batch:
            self._attempts.pop(envelope.headers["message_id"], None)
            done.append(message)
        return True

    def _apply_through_outages(
        self, envelopes: list[Envelope], producer: Producer
    ) -> None:
        """Apply ``envelopes``, waiting out any outage however long it lasts.
        Meanwhile the broker gets heartbeats: the consuming thread is in here,
        not reading, and the broker would take the messages back otherwise."""
        while True:
            try:
                self.apply_all(envelopes)
            except Exception as e:
                if server_of(e) is None or self._stopping.is_set():
                    raise
                self.outages.wait(e, self._stopping)
                producer.channel.connection.send_heartbeat()
                continue
            self.outages.over()
            return

    def _envelope(self, body: Any, message: KombuMessage) -> Envelope:
        if isinstance(body, Undecodable):
            raise InvalidInput(f"malformed message: {body.error}: {body.raw[:200]!r}")
        headers = {k: str(v) for k, v in (message.headers or {}).items()}
        message_id = headers.get("message_id") or message.properties.get("message_id")
        if not isinstance(body, dict) or "message_type" not in body or not message_id:
            raise InvalidInput(f"malformed message: {str(body)[:200]!r}")
        headers["message_id"] = str(message_id)
        envelope = Envelope(
            str(body["message_type"]), dict(body.get("body") or {}), headers
        )
        self.check(envelope)
        return envelope

    def _retry_or_dead_letter(
        self,
        envelope: Envelope,
        message: KombuMessage,
        producer: Producer,
        error: Exception,
    ) -> bool:
        """Requeue the message after a backoff, or dead-letter it once it has
        failed ``max_attempts`` times; True if it was dead-lettered (and is to
        be acknowledged)."""
        message_id = envelope.headers["message_id"]
        attempts = self._attempts.get(message_id, 0) + 1
        self._attempts[message_id] = attempts
        if attempts >= self.max_attempts:
            self._attempts.pop(message_id, None)
            reason = f"failed {attempts} times: {error!r}"
            self._dead_letter(message, producer, reason)
            return True
        self.outcomes["retried"] += 1
        logger.warning(
            "%s: %s failed (attempt %s): %r", self.name, message_id, attempts, error
        )
        self._stopping.wait(min(0.05 * 2**attempts, 2.0))
        message.requeue()
        return False

    def _dead_letter(
        self, message: KombuMessage, producer: Producer, reason: str
    ) -> None:
        """Publish the message to the dead-letter queue (the caller
        acknowledges it, after)."""
        self.outcomes["dead_lettered"] += 1
        logger.error("%s: dead-lettered: %s", self.name, reason)
        headers = dict(message.headers or {})
        headers[ERROR_HEADER] = reason
        headers["x-ordersys-queue"] = self.name
        producer.publish(
            message.body,
            exchange=dead_letter_exchange(self.prefix),
            routing_key=self.name,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=2,
            message_id=message.properties.get("message_id"),
        )
