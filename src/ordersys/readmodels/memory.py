"""Read models in memory, for the embedded mode and for tests of projections."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.popo import POPOTrackingRecorder

from ordersys.readmodels.store import (
    Change,
    Document,
    Key,
    ReadModelStore,
    ReadModelView,
    Row,
    Stored,
    as_json,
    decode,
    encode,
)


class MemoryView(POPOTrackingRecorder, ReadModelView):
    def __init__(self) -> None:
        super().__init__()
        self.documents: dict[tuple[str, str], Stored] = {}

    def apply(
        self,
        changes: Sequence[Change],
        tracking: Tracking,
        *,
        after: int | None = None,
    ) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            recorded = self._max_tracking_ids[tracking.application_name] or 0
            if after is not None and recorded != after:
                msg = f"tracking is at {recorded}, not {after}"
                raise IntegrityError(msg)
            for change in changes:
                text = change.json
                if text is None:
                    self.documents.pop((change.collection, change.key), None)
                else:
                    self.documents[(change.collection, change.key)] = Stored(
                        decode(text), tracking.notification_id
                    )
            self._insert_tracking(tracking)

    def load(self, rows: Iterable[Row], tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            for row in rows:
                self.documents[(row.collection, row.key)] = Stored(
                    decode(row.json), row.position
                )
            self._insert_tracking(tracking)

    def get(self, collection: str, key: str) -> Stored | None:
        with self._database_lock:
            stored = self.documents.get((collection, key))
        return None if stored is None else Stored(as_json(stored.doc), stored.position)

    def get_many(self, keys: Collection[Key]) -> dict[Key, bytes | None]:
        with self._database_lock:
            found = {key: self.documents.get(key) for key in keys}
        return {k: None if s is None else encode(s.doc) for k, s in found.items()}


def _matches(doc: Document, where: Mapping[str, Any]) -> bool:
    return all(field in doc and doc[field] == value for field, value in where.items())


class MemoryReadModelStore(ReadModelStore):
    def __init__(self, projection: str) -> None:
        super().__init__(projection)
        self._lock = threading.Lock()
        self._views: dict[int, MemoryView] = {}
        self._live = 0

    def live_generation(self) -> int:
        with self._lock:
            if not self._live:
                self._views.setdefault(1, MemoryView())
                self._live = 1
            return self._live

    def view(self, generation: int) -> MemoryView:
        with self._lock:
            return self._views.setdefault(generation, MemoryView())

    def new_generation(self) -> int:
        self.live_generation()
        with self._lock:
            generation = max(self._views) + 1
            self._views[generation] = MemoryView()
            return generation

    def promote(self, generation: int) -> None:
        with self._lock:
            self._views.setdefault(generation, MemoryView())
            self._live = generation

    def drop(self, generation: int) -> None:
        with self._lock:
            if generation == self._live:
                msg = f"generation {generation} of {self.projection} is live"
                raise ValueError(msg)
            self._views.pop(generation, None)

    def _live_documents(self, collection: str) -> list[Document]:
        """The collection's documents in key order (ties in ``find`` keep it)."""
        view = self.view(self.live_generation())
        with view._database_lock:
            keyed = [
                (k, s.doc) for (c, k), s in view.documents.items() if c == collection
            ]
        return [as_json(doc) for _, doc in sorted(keyed, key=lambda pair: pair[0])]

    def get(self, collection: str, key: str) -> Stored | None:
        return self.view(self.live_generation()).get(collection, key)

    def find(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        *,
        order_by: str | None = None,
        descending: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Document]:
        docs = [d for d in self._live_documents(collection) if _matches(d, where or {})]
        if order_by is not None:
            present = [d for d in docs if d.get(order_by) is not None]
            missing = [d for d in docs if d.get(order_by) is None]
            present.sort(key=lambda d: d[order_by], reverse=descending)
            docs = present + missing
        return docs[offset : offset + limit]

    def count(self, collection: str, where: Mapping[str, Any] | None = None) -> int:
        return sum(_matches(d, where or {}) for d in self._live_documents(collection))

    def close(self) -> None:
        """Nothing to release."""
