"""Looking at dead letters, and re-driving them once their cause is fixed.

A consumer queue ``Q`` dead-letters into ``Q.dlq`` (see
:mod:`ordersys.messaging.consumer`). Re-driving moves each dead letter back to
``Q`` (with publisher confirms, before it is removed from ``Q.dlq``); a message
that had been applied after all is recognised by its message id and changes
nothing, so replaying never creates duplicates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import amqp
from kombu.connection import Connection

from ordersys.errors import InfrastructureUnavailable, NotFound
from ordersys.settings import address_of
from ordersys.transport import ERROR_HEADER


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter: its message id, type, reason, body and headers."""

    message_id: str
    message_type: str
    reason: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class DeadLetters:
    """The dead-letter queue of one consumer queue."""

    def __init__(self, url: str, queue: str) -> None:
        self.url = url
        self.queue = queue
        self.dlq = f"{queue}.dlq"
        self.address = address_of(url)

    def _channel(self, connection: Connection) -> Any:
        return _open_channel(connection, self.address)

    def count(self) -> int:
        with Connection(self.url, connect_timeout=5) as connection:
            channel = self._channel(connection)
            try:
                _, messages, _ = channel.queue_declare(self.dlq, passive=True)
            except amqp.exceptions.NotFound:
                raise NotFound(f"there is no dead-letter queue {self.dlq}") from None
        return int(messages)

    def peek(self, limit: int = 20) -> list[DeadLetter]:
        """Up to ``limit`` dead letters, left in place."""
        letters = []
        with Connection(self.url, connect_timeout=5) as connection:
            channel = self._channel(connection)
            for _ in range(limit):
                message = channel.basic_get(self.dlq, no_ack=False)
                if message is None:
                    break
                letters.append(_letter(message))
            # Closing the channel without acknowledging puts them all back.
        return letters

    def replay(self, message_id: str | None = None) -> int:
        """Move the dead letters there are now (or only the one with
        ``message_id``) back to their queue; returns how many. One that is
        dead-lettered again at once is not moved twice; the letters passed
        over go back when the channel closes, unacknowledged."""
        moved = 0
        with Connection(self.url, connect_timeout=5) as connection:
            channel = self._channel(connection)
            channel.confirm_select()
            present = channel.queue_declare(self.dlq, passive=True).message_count
            while moved < present and (
                message := channel.basic_get(self.dlq, no_ack=False)
            ):
                if message_id is not None and _letter(message).message_id != message_id:
                    present -= 1
                    continue
                headers = dict(message.headers or {})
                headers.pop(ERROR_HEADER, None)
                headers["x-ordersys-replayed"] = True
                channel.basic_publish_confirm(
                    amqp.Message(
                        message.body,
                        content_type=message.properties.get("content_type"),
                        delivery_mode=2,
                        message_id=message.properties.get("message_id"),
                        application_headers=headers,
                    ),
                    exchange="",
                    routing_key=self.queue,
                )
                channel.basic_ack(message.delivery_tag)
                moved += 1
        return moved

    def purge(self) -> int:
        """Delete every dead letter; returns how many."""
        with Connection(self.url, connect_timeout=5) as connection:
            return int(self._channel(connection).queue_purge(self.dlq) or 0)


def _open_channel(connection: Connection, address: str) -> Any:
    try:
        connection.ensure_connection(max_retries=1)
    except Exception as e:
        raise InfrastructureUnavailable("RabbitMQ", address, str(e)) from None
    return connection.connection.channel()


@dataclass(frozen=True)
class QueueCount:
    """What the broker counts of a queue: its consumers and its messages."""

    queue: str
    consumers: int
    messages: int


def count_queues(url: str, queues: list[str]) -> dict[str, QueueCount | None]:
    """The broker's count of each queue (None for one never declared), over
    one connection: passive declares change nothing."""
    counts: dict[str, QueueCount | None] = {}
    with Connection(url, connect_timeout=5) as connection:
        for queue in queues:
            channel = _open_channel(connection, address_of(url))
            try:
                _, messages, consumers = channel.queue_declare(queue, passive=True)
                counts[queue] = QueueCount(queue, int(consumers), int(messages))
            except amqp.exceptions.NotFound:
                counts[queue] = None  # which closed the channel
            else:
                channel.close()
    return counts


def _letter(message: Any) -> DeadLetter:
    headers = dict(message.headers or {})
    # py-amqp hands a text body over as str (a service request's, say).
    raw = message.body
    body = raw if isinstance(raw, bytes) else str(raw).encode()
    return DeadLetter(
        message_id=str(
            headers.get("message_id") or message.properties.get("message_id")
        ),
        message_type=_message_type(body),
        reason=str(headers.get(ERROR_HEADER, "dead-lettered by the broker")),
        body=body,
        headers={str(k): str(v) for k, v in headers.items()},
    )


def _message_type(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message_type", "?"))
    except (ValueError, AttributeError):
        return "(malformed)"
