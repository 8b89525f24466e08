"""Publishing with publisher confirms, many messages in flight at once.

Waiting for the broker's confirm of each message before sending the next caps
throughput at one round trip per message. A :class:`ConfirmedPublisher` sends
messages without waiting (:meth:`~ConfirmedPublisher.send`) and reads the
confirms as they arrive (:meth:`~ConfirmedPublisher.confirmed_through`; one ack
often covers many messages). A nack or a lost connection fails everything still
unconfirmed: the caller publishes it again, which is safe because consumers
deduplicate by message id. A batch's frames go to the socket in one write: a
write per message (a system call, a TCP segment each) cost more than the
rest of publishing it.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import amqp
import orjson
from amqp import spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps
from kombu.connection import Connection

from ordersys.errors import InfrastructureUnavailable
from ordersys.settings import address_of
from ordersys.transport import Envelope, Transport


@dataclass(frozen=True)
class Outgoing:
    """A message to publish to the events exchange."""

    routing_key: str
    body: bytes
    message_id: str
    headers: dict[str, Any] = field(default_factory=dict)


_PROPERTY_FLAGS = struct.pack(
    ">H",
    0x8000  # content_type
    | 0x2000  # application_headers
    | 0x1000  # delivery_mode
    | 0x0080,  # message_id
)
_JSON = b"\x10application/json"
_PERSISTENT = b"\x02"
_INT32 = 2**31 - 1


def _header_table(headers: Mapping[str, Any]) -> bytes | None:
    """AMQP's field table of ``headers`` if every value is a string or an
    integer of 32 bits (what messages here carry), else None."""
    entries = []
    for key, value in headers.items():
        name = key.encode("utf-8", "surrogatepass")
        entries.append(struct.pack("B", len(name)))
        entries.append(name)
        if isinstance(value, str):
            encoded = value.encode("utf-8", "surrogatepass")
            entries.append(struct.pack(">cI", b"S", len(encoded)))
            entries.append(encoded)
        elif type(value) is int and -_INT32 <= value <= _INT32:
            entries.append(struct.pack(">ci", b"I", value))
        else:
            return None
    table = b"".join(entries)
    return struct.pack(">I", len(table)) + table


class _Message(amqp.Message):  # type: ignore[misc]  # py-amqp has no types
    """A persistent JSON message with an id and headers, whose properties are
    written as py-amqp writes them, but directly: its general writer took more
    CPU than all the rest of publishing a message."""

    __slots__ = ()

    def _serialize_properties(self) -> bytes:
        table = _header_table(self.properties["application_headers"])
        message_id = self.properties["message_id"].encode()
        if table is None or len(message_id) > 255:
            written: bytes = super()._serialize_properties()
            return written
        return b"".join(
            (
                _PROPERTY_FLAGS,
                _JSON,
                table,
                _PERSISTENT,
                struct.pack("B", len(message_id)),
                message_id,
            )
        )


class _Frames:
    """A transport for py-amqp's frame writer that keeps what it is given. The
    writer reuses one buffer for every frame, so each is copied."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes | memoryview) -> None:
        self.chunks.append(bytes(data))

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


class ConfirmedPublisher:
    """Publishes batches to one topic exchange and waits for all their confirms."""

    def __init__(
        self, url: str, exchange: str, *, confirm_timeout: float = 30.0
    ) -> None:
        self.url = url
        self.exchange = exchange
        self.confirm_timeout = confirm_timeout
        self.address = address_of(url)
        self._connection: Connection | None = None
        self._channel: Any = None
        self._through = 0
        """Every tag up to this one is confirmed."""
        self._beyond: set[int] = set()
        """The tags above ``_through`` confirmed on their own, out of order."""
        self._nacked = False
        self._next_tag = 1
        self._frames = _Frames()
        self._write_frame: Any = None
        self._publish_args: dict[str, bytes] = {}
        """The arguments of Basic.Publish, by routing key."""

    def _open(self) -> Any:
        if self._channel is None:
            connection = Connection(self.url, connect_timeout=5)
            connection.ensure_connection(max_retries=1)
            channel = connection.connection.channel()
            channel.exchange_declare(
                self.exchange, "topic", durable=True, auto_delete=False
            )
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            self._connection, self._channel, self._next_tag = connection, channel, 1
            self._through = 0
            self._write_frame = frame_writer(channel.connection, self._frames)
        return self._channel

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        # Tags are consecutive and acks come mostly in order: a counter, not a
        # set of every tag in flight (rebuilt for each multiple ack).
        if delivery_tag <= self._through:
            return
        beyond = self._beyond
        if multiple:
            self._through = delivery_tag
            if beyond:
                beyond.difference_update([t for t in beyond if t <= delivery_tag])
        elif delivery_tag == self._through + 1:
            self._through = delivery_tag
        else:
            beyond.add(delivery_tag)
            return
        while beyond and self._through + 1 in beyond:
            self._through += 1
            beyond.discard(self._through)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked = True
        self._on_ack(delivery_tag, multiple)

    @property
    def in_flight(self) -> int:
        """How many messages await their confirm."""
        return self._next_tag - 1 - self._through - len(self._beyond)

    def send(self, messages: Sequence[Outgoing]) -> int:
        """Publish ``messages`` without waiting; returns the delivery tag of the
        last one (confirmed once :meth:`confirmed_through` reaches it)."""
        try:
            channel = self._open()
            publish_args = self._publish_args
            for message in messages:
                args = publish_args.get(message.routing_key)
                if args is None:
                    args = dumps(
                        "Bssbb", (0, self.exchange, message.routing_key, False, False)
                    )
                    publish_args[message.routing_key] = args
                # What channel.basic_publish writes, without the read for
                # broker notices it makes before each message (a few system
                # calls each): reading the confirms reads those too.
                self._write_frame(
                    1,
                    channel.channel_id,
                    spec.Basic.Publish,
                    args,
                    _Message(
                        message.body,
                        content_type="application/json",
                        delivery_mode=2,
                        message_id=message.message_id,
                        application_headers=message.headers,
                    ),
                )
                self._next_tag += 1
            connection = channel.connection
            connection.transport.write(self._frames.take())
        except Exception as e:
            self._frames.chunks.clear()
            raise self._failed(e) from None
        return self._next_tag - 1

    def confirmed_through(self, wait: float = 0.0) -> int:
        """The highest tag up to which every message is confirmed, after reading
        the confirms that have arrived (waiting up to ``wait`` seconds for one)."""
        if self._connection is None:
            return self._next_tag - 1
        try:
            if self.in_flight:
                # py-amqp's drain_events sets the socket's timeout and back for
                # each frame (an ack each, mostly): here once for the lot.
                broker = self._channel.connection
                with broker.transport.having_timeout(wait):
                    broker.blocking_read(None)
                if self.in_flight:
                    with broker.transport.having_timeout(0):
                        while self.in_flight:
                            broker.blocking_read(None)
        except TimeoutError:
            pass
        except Exception as e:
            raise self._failed(e) from None
        if self._nacked:
            raise self._failed(RuntimeError("the broker refused a message"))
        return self._through

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Publish ``messages`` and return once the broker has confirmed them all;
        raise :class:`InfrastructureUnavailable` if it did not."""
        last = self.send(messages)
        deadline = time.monotonic() + self.confirm_timeout
        while self.confirmed_through(wait=0.5) < last:
            if time.monotonic() > deadline:
                missing = self.in_flight
                reason = f"{missing} messages not confirmed in {self.confirm_timeout}s"
                raise self._failed(RuntimeError(reason))

    def _failed(self, error: Exception) -> InfrastructureUnavailable:
        """Drop the connection: its unconfirmed messages count as lost."""
        self.close()
        if isinstance(error, InfrastructureUnavailable):
            return error
        reason = str(error) or repr(error)
        return InfrastructureUnavailable("RabbitMQ", self.address, reason)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.release()
        self._connection, self._channel = None, None
        self._through = self._next_tag - 1
        self._beyond.clear()
        self._nacked = False


class Publisher(Protocol):
    """What the relay publishes through: send without waiting, then learn how
    far the confirms have come."""

    confirm_timeout: float

    @property
    def in_flight(self) -> int: ...

    def send(self, messages: Sequence[Outgoing]) -> int: ...

    def confirmed_through(self, wait: float = 0.0) -> int: ...

    def close(self) -> None: ...


class TransportPublisher:
    """A :class:`Publisher` over a :class:`~ordersys.transport.Transport`, for
    the embedded mode: the transport hands messages over as it publishes them,
    so each is confirmed as soon as it is sent."""

    confirm_timeout = 0.0
    in_flight = 0

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._sent = 0

    def send(self, messages: Sequence[Outgoing]) -> int:
        for message in messages:
            decoded = orjson.loads(message.body)
            headers = {k: str(v) for k, v in message.headers.items()}
            envelope = Envelope(decoded["message_type"], decoded["body"], headers)
            self.transport.publish(message.routing_key, envelope)
            self._sent += 1
        return self._sent

    def confirmed_through(self, wait: float = 0.0) -> int:  # noqa: ARG002
        return self._sent

    def close(self) -> None:
        """Nothing to release: the transport belongs to the caller."""


def publisher_for(transport: Transport) -> Publisher:
    """Confirmed publishing to the broker when ``transport`` goes through one,
    else straight through ``transport`` (the embedded mode)."""
    broker = transport.broker()
    if broker is not None:
        return ConfirmedPublisher(broker.url, broker.events_exchange)
    return TransportPublisher(transport)
