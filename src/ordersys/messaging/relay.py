"""The relay: an application's event store is its outbox.

The relay follows the application's events from the position it recorded last,
publishes those that are integration events to the events exchange (routing key
``<service>.<EventName>``, message id ``<service>:<position>``), waits for the
broker to confirm the whole batch, and only then records the new position. A
relay killed between publishing and recording publishes the batch again on
restart: consumers deduplicate by message id, so nothing is lost or applied twice.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import Any

from eventsourcing.persistence import Notification, Tracking, TrackingRecorder
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.postgres import PostgresFactory, PostgresTrackingRecorder
from pydantic_core import to_jsonable_python

from ordersys.application import Application
from ordersys.messaging.publisher import ConfirmedPublisher, Outgoing

logger = logging.getLogger("ordersys.relay")


def checkpoint_for(app: Application, purpose: str) -> TrackingRecorder:
    """A tracking recorder beside ``app``'s events (in memory in embedded mode)."""
    factory = app.factory
    if isinstance(factory, PostgresFactory):
        recorder = PostgresTrackingRecorder(
            factory.datastore, tracking_table_name=f"{app.name.lower()}_{purpose}"
        )
        recorder.create_table()
        return recorder
    return POPOTrackingRecorder()


def event_name(topic: str) -> str:
    """``module:Order.Placed`` → ``Placed`` (the event class's own name)."""
    return topic.rsplit(".", 1)[-1].rsplit(":", 1)[-1]


class Relay:
    """Publishes ``app``'s integration events as ``service`` with confirms."""

    def __init__(
        self,
        app: Application,
        service: str,
        publisher: ConfirmedPublisher,
        *,
        integration_events: Iterable[type[Any]],
        batch_size: int = 500,
        checkpoint: TrackingRecorder | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.publisher = publisher
        self.topics = {f"{c.__module__}:{c.__qualname__}" for c in integration_events}
        self.batch_size = batch_size
        self.checkpoint = checkpoint or checkpoint_for(app, "relay")
        self.name = f"relay:{service}"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def position(self) -> int:
        """The position up to which every integration event is confirmed."""
        return self.checkpoint.max_tracking_id(self.name) or 0

    def lag(self) -> int:
        return max(self.app.head_position() - self.position(), 0)

    def run_once(self) -> int:
        """Publish the next batch; returns how many events it covered."""
        notifications = self.app.recorder.select_notifications(
            start=self.position(), limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        self.publisher.publish(
            [self._outgoing(n) for n in notifications if n.topic in self.topics]
        )
        self.checkpoint.insert_tracking(Tracking(self.name, notifications[-1].id))
        return len(notifications)

    def _outgoing(self, notification: Notification) -> Outgoing:
        domain_event = self.app.mapper.to_domain_event(notification)
        name = event_name(notification.topic)
        payload = to_jsonable_python(vars(domain_event))
        body = json.dumps({"message_type": name, "body": payload}).encode()
        message_id = f"{self.service}:{notification.id}"
        return Outgoing(
            routing_key=f"{self.service}.{name}",
            body=body,
            message_id=message_id,
            headers={"message_id": message_id, "origin": self.service},
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
                published = self.run_once()
            except Exception as e:
                logger.warning("%s: %s; retrying in %.1fs", self.name, e, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = poll_interval
            if published < self.batch_size:
                self._stopping.wait(poll_interval)
