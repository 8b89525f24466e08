"""The inbox: how a consumer applies each integration event once.

Whatever brings the messages (a RabbitMQ queue, the in-process transport), a
consumer checks each against its contract and applies it in one transaction
of its :class:`~ordersys.readmodels.records.RecordStore` that first records
the message's id; the handler's effect commits with that record, so a
message delivered again finds it and changes nothing.

Messages that arrive together are applied together (:meth:`Inbox.apply_all`):
one transaction records all their ids at once, applies the new ones in order
and commits once. If any of them fails, none of them is applied: the
consumer then applies them one at a time, so that only the failing one is
retried or dead-lettered.
"""

from __future__ import annotations

import logging
from collections import Counter as CounterOf
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from ordersys.errors import InvalidInput
from ordersys.messages import Message
from ordersys.messaging.contracts import check
from ordersys.readmodels.records import Records, RecordStore
from ordersys.transport import Envelope, handling

logger = logging.getLogger("ordersys.consumer")

Handler = Callable[[Envelope, Records], None]
"""Applies one event to the records of the transaction it is given."""

DEAD_LETTERS = "ordersys.dead_letters"
"""The collection where a consumer without a broker keeps its dead letters."""


class Inbox:
    """Applies the events ``handlers`` name, each once, as consumer ``name``."""

    def __init__(
        self,
        name: str,
        handlers: Mapping[str, Handler],
        store: RecordStore,
        *,
        contracts: Mapping[str, type[Message]] | None = None,
        max_attempts: int = 5,
    ) -> None:
        self.name = name
        self.handlers = dict(handlers)
        self.store = store
        self.contracts = dict(contracts or {})
        self.max_attempts = max_attempts
        self.outcomes: CounterOf[str] = CounterOf()
        """Messages by outcome: applied, duplicate, retried, dead_lettered."""
        self.duplicates = 0
        """Messages received again after they were applied (and left alone)."""

    def check(self, envelope: Envelope) -> None:
        """Raise :class:`InvalidInput` if no handler takes ``envelope`` or it
        does not fit its contract (it will never apply: dead-letter it)."""
        if not envelope.headers.get("message_id"):
            raise InvalidInput(f"malformed message: no message id: {envelope!r:.200}")
        if envelope.message_type not in self.handlers:
            raise InvalidInput(f"{self.name} handles no {envelope.message_type!r}")
        contract = self.contracts.get(envelope.message_type)
        if contract is not None:
            check(envelope, contract)

    def apply(self, envelope: Envelope) -> bool:
        """Apply ``envelope`` once; False if it had been applied already."""
        return self.apply_all([envelope])[0]

    def apply_all(self, envelopes: Sequence[Envelope]) -> list[bool]:
        """Apply ``envelopes`` in order, each once, in one transaction (all or
        none); for each, False if it had been applied already (or comes again
        earlier in ``envelopes``)."""
        ids = [envelope.headers["message_id"] for envelope in envelopes]
        with self.store.transaction() as records:
            new = records.first_deliveries(self.name, ids)
            firsts = []
            for envelope, message_id in zip(envelopes, ids, strict=True):
                first = message_id in new
                new.discard(message_id)
                if first:
                    with handling(envelope):
                        self.handlers[envelope.message_type](envelope, records)
                firsts.append(first)
        applied, again = sum(firsts), len(firsts) - sum(firsts)
        if applied:
            self.outcomes["applied"] += applied
        if again:
            self.outcomes["duplicate"] += again
            self.duplicates += again
        return firsts

    def processed_at(self, message_ids: Sequence[str]) -> dict[str, datetime]:
        """When each of ``message_ids`` that this consumer applied was applied
        (its dedupe record, for the console)."""
        if not message_ids:
            return {}
        with self.store.reading() as records:
            return records.processed_at(self.name, message_ids)

    def keep_dead_letter(self, envelope: Envelope, reason: str) -> None:
        """Keep a message that will not apply, with why, among the records
        (where there is no broker's dead-letter queue)."""
        self.outcomes["dead_lettered"] += 1
        logger.error("%s: dead-lettered: %s", self.name, reason)
        message_id = envelope.headers.get("message_id") or repr(envelope)[:200]
        with self.store.transaction() as records:
            records.put(
                DEAD_LETTERS,
                f"{self.name}:{message_id}",
                {
                    "consumer": self.name,
                    "message_id": message_id,
                    "message_type": envelope.message_type,
                    "reason": reason,
                    "body": envelope.body,
                    "headers": envelope.headers,
                    "at": datetime.now(UTC).isoformat(),
                },
            )

    def close(self) -> None:
        self.store.close()
