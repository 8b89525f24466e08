"""Consumers of integration events that never lose or double-apply one.

Each consuming service has one durable quorum queue bound to the events it
needs. A message is applied by the consumer's inbox (:mod:`ordersys.messaging.inbox`):
in one transaction of its record store (PostgreSQL) that first records the
message's identity (origin service and position, the message id) in
``ordersys_processed_messages``; the handler's effect commits with that record,
and the message is acknowledged only after the commit. A redelivered message
finds its record and changes nothing.

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
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from kombu.connection import Connection as KombuConnection
from kombu.entity import Exchange, Queue, binding
from kombu.message import Message as KombuMessage
from kombu.messaging import Producer
from psycopg import sql

from ordersys.errors import InvalidInput
from ordersys.messages import Message
from ordersys.messaging.inbox import Handler, Inbox
from ordersys.outages import Outages, server_of
from ordersys.persistence.database import connect, creating_tables, ensure_schema
from ordersys.readmodels.records import RecordStore
from ordersys.readmodels.records_postgres import PostgresRecordStore
from ordersys.settings import Settings
from ordersys.transport import ERROR_HEADER, Envelope
from ordersys.transport.rabbitmq import Undecodable, consume_in_thread

__all__ = ["EventConsumer", "Handler", "queues_for", "registered_queues"]

logger = logging.getLogger("ordersys.consumer")


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
    closes the store when it stops."""

    def __init__(
        self,
        settings: Settings,
        queue: str,
        handlers: Mapping[str, Handler],
        *,
        patterns: Sequence[str],
        prefix: str | None = None,
        prefetch: int = 20,
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
        waits for the broker, if it is not there yet)."""
        self._stopping.clear()
        self._thread = consume_in_thread(
            self.settings.rabbitmq_url,
            self.name,
            [self.queue],
            self._on_message,
            self.prefetch,
            self._stopping,
            declare=[self.dlq],
            outages=self.outages,
        )

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

    def _on_message(self, body: Any, message: KombuMessage, producer: Producer) -> None:
        try:
            envelope = self._envelope(body, message)
        except InvalidInput as e:
            self._dead_letter(message, producer, e.message)
            return
        try:
            self._apply_through_outages(envelope, producer)
        except Exception as e:
            if self._stopping.is_set():
                return  # unacknowledged: delivered again once a consumer is back
            if server_of(e) is not None:
                raise  # the broker went away meanwhile: the consumer reconnects
            self._retry_or_dead_letter(envelope, message, producer, e)
            return
        self._attempts.pop(envelope.headers["message_id"], None)
        message.ack()

    def _apply_through_outages(self, envelope: Envelope, producer: Producer) -> None:
        """Apply ``envelope``, waiting out any outage however long it lasts.
        Meanwhile the broker gets heartbeats: the consuming thread is in here,
        not reading, and the broker would take the message back otherwise."""
        while True:
            try:
                self.apply(envelope)
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
    ) -> None:
        message_id = envelope.headers["message_id"]
        attempts = self._attempts.get(message_id, 0) + 1
        self._attempts[message_id] = attempts
        if attempts >= self.max_attempts:
            self._attempts.pop(message_id, None)
            reason = f"failed {attempts} times: {error!r}"
            self._dead_letter(message, producer, reason)
            return
        self.outcomes["retried"] += 1
        logger.warning(
            "%s: %s failed (attempt %s): %r", self.name, message_id, attempts, error
        )
        self._stopping.wait(min(0.05 * 2**attempts, 2.0))
        message.requeue()

    def _dead_letter(
        self, message: KombuMessage, producer: Producer, reason: str
    ) -> None:
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
        message.ack()
