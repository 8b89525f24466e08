"""The relay: an application's event store is its outbox.

The relay follows the application's events from the position it recorded last
and publishes those that are integration events to the events exchange (routing
key ``<service>.<EventName>``, message id ``<service>:<position>``). Batches are
pipelined: the next one is sent while earlier ones await the broker's confirms
(up to ``window`` messages in flight), and a batch's position is recorded only
once it and every batch before it are confirmed.

The confirmed position is recorded at most every ``record_interval`` seconds
(0.25), and always when :meth:`Relay.run_once` finds nothing left to send, when
the relay stops, and before it waits out a broker outage (the running relay's
empty polls record it once the interval is over): one commit per confirmed
batch was up to 50 commits a second per relay under load, for a position that
only matters after a crash.
The trade-off: a relay killed before recording publishes again what was
confirmed since its last record (at most ``record_interval`` of its stream,
plus what was in flight) on restart. Consumers deduplicate by message id
(``<service>:<position>``), so nothing is lost or applied twice. The relay is
its checkpoint's only writer, so it reads the checkpoint once and then keeps
its position itself: an idle relay's poll is one query for new events. While
PostgreSQL or the broker is down the relay waits for it, with backoff, and goes
on from the last position confirmed when it is back (:mod:`ordersys.outages`).

A relay keeps its application's events in order, so it runs in one replica of
a service at a time: its thread first holds the lease ``relay:<application>``
(:mod:`ordersys.leases`; with events in PostgreSQL), and a replica that does
not hold it retries the claim every ``claim_interval`` seconds and does nothing
else. A relay that loses its lease (its connection to PostgreSQL) records what
is confirmed and goes back to claiming; one that takes over reads the
checkpoint again, as another replica moved it on meanwhile. While the lease
changes hands the two may both publish for a moment: consumers deduplicate.
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
from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.postgres import PostgresFactory, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteFactory, SQLiteTrackingRecorder
from pydantic_core import to_jsonable_python

from ordersys.application import Application
from ordersys.leases import Holding, Leases
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
from ordersys.outages import Outages, server_of
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
    ``leases`` are those the relay's lease is claimed with; by default, with
    events in PostgreSQL, the relay opens its own when it starts.
    """

    claim_interval = 1.0
    """Seconds between two claims of the lease by a relay that does not hold it."""

    def __init__(
        self,
        app: Application,
        service: str,
        publisher: Publisher,
        *,
        integration_events: Iterable[type[Any]],
        batch_size: int = 500,
        window: int = 2000,
        record_interval: float = 0.25,
        checkpoint: TrackingRecorder | None = None,
        private_fields: Iterable[str] = (),
        leases: Leases | None = None,
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
        self.record_interval = record_interval
        self._recorded: int | None = None
        """The position in the checkpoint, once read (the relay writes it)."""
        self._confirmed = 0
        """The position up to which the broker has confirmed every event."""
        self._recorded_at = 0.0
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
        self.leases = leases
        self._own_leases = False
        self._holding = Holding(leases, f"relay:{app.name}")

    def position(self) -> int:
        """The position recorded: every integration event up to it is confirmed."""
        recorded = self._recorded
        if recorded is None:
            return self.checkpoint.max_tracking_id(self.name) or 0
        return recorded

    def lag(self) -> int:
        return max(self.app.head_position() - self.position(), 0)

    def run_once(self) -> int:
        """Send the next batch and record what the broker has confirmed;
        returns how many events the batch covered. With nothing left to send it
        waits for every confirm and records it, then returns 0."""
        return self._run(record_when_idle=True)

    def _run(self, *, record_when_idle: bool) -> int:
        try:
            sent = self._send_next_batch()
            if not sent:
                self._flush(self.publisher.confirm_timeout, record=record_when_idle)
            elif self._record_due():
                # Confirms are read when they are to be recorded (or the
                # window is full): reading them for every batch cost more
                # system calls than sending it.
                self._take_confirms(wait=0.0)
        except BaseException as e:
            # What was not confirmed is published again, from the last
            # position confirmed.
            self._sent_through = None
            self._in_flight.clear()
            if server_of(e) == "RabbitMQ":  # record what it did confirm before waiting
                self._record_quietly()
            raise
        return sent

    def _send_next_batch(self) -> int:
        while self.publisher.in_flight >= self.window:
            self._take_confirms(wait=1.0)
        if self._recorded is None:
            self._recorded = self._confirmed = self.position()
            self._recorded_at = time.monotonic()
        if self._sent_through is None:
            self._sent_through = self._confirmed
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

    def _record_due(self) -> bool:
        return time.monotonic() - self._recorded_at >= self.record_interval

    def _take_confirms(self, wait: float) -> None:
        """Read the confirms; record the position if the last record is
        ``record_interval`` old."""
        in_flight = self._in_flight
        if in_flight:
            confirmed = self.publisher.confirmed_through(wait=wait)
            while in_flight and in_flight[0][0] <= confirmed:
                self._confirmed = in_flight.popleft()[1]
        if self._record_due():
            self._record()

    def _record(self) -> None:
        confirmed = self._confirmed
        if self._recorded is not None and confirmed > self._recorded:
            try:
                self.checkpoint.insert_tracking(Tracking(self.name, confirmed))
            except IntegrityError:
                # The replica that took the lease over recorded further on.
                logger.info("%s: checkpoint already past %s", self.name, confirmed)
                self._forget_position()
                return
            self._recorded = confirmed
            self._recorded_at = time.monotonic()

    def _forget_position(self) -> None:
        """Go on from the checkpoint: read again when the next batch is sent."""
        self._recorded = self._sent_through = None
        self._in_flight.clear()

    def _record_quietly(self) -> None:
        """Record what is confirmed, if PostgreSQL lets it: else it is
        published again (the relay is failing or stopping anyway)."""
        try:
            self._record()
        except Exception as e:
            logger.warning("%s: position not recorded: %s", self.name, e)

    def _flush(self, within: float, *, record: bool = True) -> None:
        """Wait for every confirm, then record the position (if ``record``,
        else only if a record is due)."""
        deadline = time.monotonic() + within
        while self._in_flight:
            self._take_confirms(wait=0.5)
            if self._in_flight and time.monotonic() > deadline:
                msg = f"{self.name}: confirms did not arrive in time"
                raise TimeoutError(msg)
        if record or self._record_due():
            self._record()

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
        if self.leases is None and isinstance(self.app.factory, PostgresFactory):
            self.leases = Leases(self.app.settings, self.name)
            self._own_leases = True
            self._holding.leases = self.leases
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
        self._holding.release()
        if self._own_leases and self.leases is not None:
            self.leases.close()

    def _loop(self, poll_interval: float) -> None:
        while not self._stopping.is_set():
            if not self._holding.claim():
                self._stopping.wait(self.claim_interval)
                continue
            # Another replica may have relayed further while this one waited.
            self._forget_position()
            try:
                self._poll(poll_interval)
            finally:
                self._stop_recording()

    def _stop_recording(self) -> None:
        """Record what the broker confirms in the next few seconds."""
        try:
            self._flush(min(self.publisher.confirm_timeout, 5.0))
        except Exception as e:
            logger.warning("%s: stopped before confirms: %s", self.name, e)
            if server_of(e) != "PostgreSQL":
                self._record_quietly()

    def _run_polled(self) -> int:
        # An empty poll between two batches of a stream would otherwise be a
        # commit: the position is recorded within record_interval anyway.
        return self._run(record_when_idle=False)

    def _poll(self, poll_interval: float) -> None:
        """Relay until the relay stops or loses its lease."""
        backoff = poll_interval
        while not self._stopping.is_set():
            if not self._holding.still_held():
                logger.warning("%s: lease lost; claiming it again", self.name)
                return
            try:
                published = self.outages.attempt(self._run_polled, self._stopping)
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
