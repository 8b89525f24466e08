"""Consumers where there is no broker: the embedded mode.

The relay publishes through the in-process transport, which hands each event
to the subscribed consumers before the relay records its position; so an event
is applied before the relay moves past it, and one published again after a
crash finds its dedupe record (at least once, applied once, as over RabbitMQ).
A handler that fails is retried with backoff, then its message is kept among
the consumer's records as a dead letter
(:data:`~ordersys.messaging.inbox.DEAD_LETTERS`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ordersys.errors import InvalidInput
from ordersys.messages import Message
from ordersys.messaging.inbox import Handler, Inbox
from ordersys.readmodels.records import RecordStore
from ordersys.settings import Settings
from ordersys.transport import Envelope, Transport

if TYPE_CHECKING:
    from ordersys.messaging.consumer import EventConsumer

logger = logging.getLogger("ordersys.consumer")


class InProcessConsumer(Inbox):
    """Applies the events published on ``transport`` that match ``patterns``."""

    def __init__(
        self,
        transport: Transport,
        name: str,
        handlers: Mapping[str, Handler],
        store: RecordStore,
        *,
        patterns: Sequence[str],
        contracts: Mapping[str, type[Message]] | None = None,
        max_attempts: int = 5,
    ) -> None:
        super().__init__(
            name, handlers, store, contracts=contracts, max_attempts=max_attempts
        )
        self.transport = transport
        self.patterns = list(patterns)
        self._stopping = threading.Event()

    def start(self) -> None:
        self._stopping.clear()
        self.transport.subscribe(self.name, self.patterns, self.receive)

    def stop(self) -> None:
        self._stopping.set()
        self.close()

    def receive(self, envelope: Envelope) -> None:
        """Apply ``envelope``, retrying a failing handler; keep it as a dead
        letter if it cannot apply."""
        try:
            self.check(envelope)
        except InvalidInput as e:
            self.keep_dead_letter(envelope, e.message)
            return
        for attempt in range(1, self.max_attempts + 1):
            try:
                self.apply(envelope)
                return
            except Exception as e:
                if attempt == self.max_attempts or self._stopping.is_set():
                    self.keep_dead_letter(envelope, f"failed {attempt} times: {e!r}")
                    return
                self.outcomes["retried"] += 1
                logger.warning(
                    "%s: %s failed (attempt %s): %r",
                    self.name,
                    envelope.headers["message_id"],
                    attempt,
                    e,
                )
                self._stopping.wait(min(0.05 * 2**attempt, 2.0))


def consumer_for(
    settings: Settings,
    transport: Transport,
    queue: str,
    handlers: Mapping[str, Handler],
    store: RecordStore,
    *,
    patterns: Sequence[str],
    contracts: Mapping[str, type[Message]] | None = None,
) -> EventConsumer | InProcessConsumer:
    """A consumer of ``queue``: over the broker when ``transport`` goes through
    one (a durable queue with a dead-letter queue), else in this process."""
    if transport.broker() is None:
        name = f"{settings.messaging_prefix}.{queue}"
        return InProcessConsumer(
            transport, name, handlers, store, patterns=patterns, contracts=contracts
        )
    from ordersys.messaging.consumer import EventConsumer

    return EventConsumer(
        settings, queue, handlers, patterns=patterns, contracts=contracts, store=store
    )
