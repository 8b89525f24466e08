"""The relay: an application's event store is its outbox.

The relay follows the application's events from the position it recorded last
and publishes those that are integration events to the events exchange (routing
key ``<service>.<EventName>``, message id ``<service>:<position>``). Batches are
pipelined: the next one is sent while earlier ones await the broker's confirms
(up to ``window`` messages in flight), and a batch's position is recorded only
once it and every batch before it are confirmed. A relay killed before recording
publishes those batches again on restart: consumers deduplicate by message id,
so nothing is lost or applied twice. While PostgreSQL or the broker is down the
relay waits for it, with backoff, and goes on from its checkpoint when it is
back (:mod:`ordersys.outages`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import orjson
from eventsourcing.persistence import Notification, Tracking, TrackingRecorder
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.postgres import PostgresFactory, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteFactory, SQLiteTrackingRecorder
from pydantic_core import to_jsonable_python

from ordersys.application import Application
from ordersys.messaging.contracts import VERSION_HEADER
from ordersys.messaging.publisher import Outgoing, Publisher
from ordersys.milestones import Milestones
from ordersys.observability.tracing import (
    TRACE_FIELD,
    SpanKind,
    carrier_of,
    inject_into,
    span,
)
from ordersys.outages import Outages
from ordersys.persistence.database import creating_tables

logger = logging.getLogger("ordersys.relay")


def checkpoint_for(app: Application, purpose: str) -> TrackingRecorder:
    """A tracking recorder beside ``app``'s events (in PostgreSQL or SQLite;
    in memory when the events are)."""
    factory = app.factory
    if isinstance(factory, PostgresFactory):
        recorder = PostgresTrackingRecorder(
            factory.datastore, tracking_table_name=f"{app.name.lower()}_{purpose}"
        )
        with creating_tables(app.settings, factory.datastore.schema):
            recorder.create_table()
        return recorder
    if isinstance(factory, SQLiteFactory):
        # SQLite's one tracking table: the relay's rows are named after it.
        on_disk = SQLiteTrackingRecorder(factory.datastore)
        on_disk.create_table()
        return on_disk
    return POPOTrackingRecorder()


def event_name(topic: str) -> str:
    """``module:Order.Placed`` → ``Placed`` (the event class's own name)."""
    return topic.rsplit(".", 1)[-1].rsplit(":", 1)[-1]


_JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS


def message_body(name: str, payload: dict[str, Any]) -> bytes:
    """The message of event ``name`` with ``payload``: what
    ``json.dumps(to_jsonable_python(...))`` makes, at a fraction of its cost
    (orjson writes UUIDs and datetimes itself; anything else it cannot, such
    as a ``Decimal`` or an integer beyond 64 bits, is written as pydantic
    would)."""
    message = {"message_type": name, "body": payload}
    try:
        return orjson.dumps(message, default=to_jsonable_python, option=_JSON_OPTIONS)
    except TypeError:
        return json.dumps(to_jsonable_python(message)).encode()


class Relay:
    """Publishes ``app``'s integration events as ``service`` with confirms.

    ``private_fields`` (a password hash, say) are left out of every message.
    """

    def __init__(
        self,
        app: Application,
        service: str,
        publisher: Publisher,
        *,
        integration_events: Iterable[type[Any]],
        batch_size: int = 500,
        window: int = 2000,
        checkpoint: TrackingRecorder | None = None,
        private_fields: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.private_fields = frozenset(private_fields) | {TRACE_FIELD}
        self.service = service
        self.publisher = publisher
        topics = (f"{c.__module__}:{c.__qualname__}" for c in integration_events)
        self.names = {topic: event_name(topic) for topic in topics}
        """The topic of each integration event, and its name in messages."""
        self.batch_size = batch_size
        self.window = window
        self._sent_through: int | None = None
        self._in_flight: deque[tuple[int, int]] = deque()
        self.checkpoint = checkpoint or checkpoint_for(app, "relay")
        self.milestones = Milestones()
        """When each position was sent to the broker (for the console)."""
        self.name = f"relay:{service}"
        self.outages = Outages(self.name)
        """The servers (PostgreSQL, RabbitMQ) the relay is waiting for."""
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def position(self) -> int:
        """The position up to which every integration event is confirmed."""
        return self.checkpoint.max_tracking_id(self.name) or 0

    def lag(self) -> int:
        return max(self.app.head_position() - self.position(), 0)

    def run_once(self) -> int:
        """Send the next batch and record what the broker has confirmed;
        returns how many events the batch covered. With nothing left to send it
        waits for every confirm and records it, then returns 0."""
        try:
            sent = self._send_next_batch()
            if sent:
                self._record_confirmed(wait=0.0)
            else:
                self._flush()
        except BaseException:
            # Whatever was not recorded is published again from the checkpoint.
            self._sent_through = None
            self._in_flight.clear()
            raise
        return sent

    def _send_next_batch(self) -> int:
        while self.publisher.in_flight >= self.window:
            self._record_confirmed(wait=1.0)
        if self._sent_through is None:
            self._sent_through = self.position()
        notifications = self.app.recorder.select_notifications(
            start=self._sent_through, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        last_tag = self.publisher.send(
            [self._outgoing(n) for n in notifications if n.topic in self.names]
        )
        self._sent_through = notifications[-1].id
        self.milestones.reached(self._sent_through)
        self._in_flight.append((last_tag, notifications[-1].id))
        return len(notifications)

    def _record_confirmed(self, wait: float) -> None:
        confirmed = self.publisher.confirmed_through(wait=wait)
        position = None
        while self._in_flight and self._in_flight[0][0] <= confirmed:
            position = self._in_flight.popleft()[1]
        if position is not None:
            self.checkpoint.insert_tracking(Tracking(self.name, position))

    def _flush(self) -> None:
        deadline = time.monotonic() + self.publisher.confirm_timeout
        while self._in_flight:
            if time.monotonic() > deadline:
                msg = f"{self.name}: confirms did not arrive in time"
                raise TimeoutError(msg)
            self._record_confirmed(wait=0.5)

    def _outgoing(self, notification: Notification) -> Outgoing:
        domain_event = self.app.mapper.to_domain_event(notification)
        name = self.names[notification.topic]
        private = self.private_fields
        payload = {k: v for k, v in vars(domain_event).items() if k not in private}
        message_id = f"{self.service}:{notification.id}"
        headers: dict[str, Any] = {
            "message_id": message_id,
            "origin": self.service,
            "message_type": name,
            VERSION_HEADER: getattr(type(domain_event), "class_version", 1),
        }
        carrier = carrier_of(domain_event)
        if carrier:  # the consumers carry on the trace the event was written in
            with span(f"relay {name}", carrier, kind=SpanKind.PRODUCER):
                inject_into(headers)
        return Outgoing(
            routing_key=f"{self.service}.{name}",
            body=message_body(name, payload),
            message_id=message_id,
            headers=headers,
        )

    def start(self, poll_interval: float = 0.02) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(poll_interval,), name=self.name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.publisher.close()

    def _loop(self, poll_interval: float) -> None:
        backoff = poll_interval
        while not self._stopping.is_set():
            try:
                published = self.outages.attempt(self.run_once, self._stopping)
                if published is None:
                    continue  # a server was down: waited, and now tries again
            except Exception as e:
                logger.warning("%s: %s; retrying in %.1fs", self.name, e, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = poll_interval
            if published < self.batch_size:
                self._stopping.wait(poll_interval)
