"""Given, then for projections: given these events, then this read model.

::

    first, second = Invoice("ann", Decimal(12)), Invoice("bob", Decimal(30))
    second.pay()
    ProjectionScenario(OpenInvoices).given(first, second).then(
        "invoices", {str(first.id): {"customer": "ann", "amount": "12"}}
    )
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Self, TypeVar

from eventsourcing.persistence import Tracking

from ordersys.aggregates import Aggregate
from ordersys.projections import Projection, ReadModel
from ordersys.readmodels.memory import MemoryReadModelStore
from ordersys.readmodels.store import Document

P = TypeVar("P", bound=Projection)

GIVEN = "given"
"""The application name the given events are tracked under."""


class ProjectionScenario(Generic[P]):
    """A projection on an in-memory read model, fed the events a test gives."""

    def __init__(self, projection_class: type[P]) -> None:
        self.store = MemoryReadModelStore(projection_class.name)
        self._view = self.store.view(self.store.live_generation())
        self.projection: P = projection_class(self._view)
        self.read_model = ReadModel(self.store)
        """Queries the projection's documents as a service would."""
        self.position = 0

    def given(self, *history: object) -> Self:
        """Apply, in one batch, the new events of each aggregate in
        ``history`` (collected from it) and any domain events in it."""
        events: list[Any] = []
        for item in history:
            if isinstance(item, Aggregate):
                events.extend(item.collect_events())
            else:
                events.append(item)
        if events:
            batch = []
            for domain_event in events:
                self.position += 1
                batch.append((domain_event, Tracking(GIVEN, self.position)))
            self.projection.process_batch(batch)
        return self

    def documents(self, collection: str) -> dict[str, Document]:
        """Every document of ``collection``, by key."""
        return {
            key: stored.doc
            for (name, key), stored in sorted(self._view.documents.items())
            if name == collection
        }

    def then(self, collection: str, documents: Mapping[str, Document]) -> Self:
        """Assert ``collection`` holds exactly ``documents`` (by key)."""
        actual = self.documents(collection)
        if actual != dict(documents):
            raise AssertionError(
                f"expected {collection} {dict(documents)}, got {actual}"
            )
        return self
