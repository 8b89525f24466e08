"""The read-model store port: what every adapter (memory, PostgreSQL) provides."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Tracking, TrackingRecorder

from ordersys.errors import InvalidInput, RequestTimeout

if TYPE_CHECKING:
    from ordersys.settings import Settings

Document = dict[str, Any]


@dataclass(frozen=True)
class Stored:
    """A document as stored, with the position of the last event that changed it."""

    doc: Document
    position: int


@dataclass(frozen=True)
class Change:
    """A document written (``doc``) or deleted (``doc is None``) by a batch."""

    collection: str
    key: str
    doc: Document | None


def as_json(doc: Mapping[str, Any]) -> Document:
    """A JSON round trip: what any adapter will hand back later."""
    try:
        decoded: Document = json.loads(json.dumps(doc))
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"a read-model document must be JSON: {e}") from None
    return decoded


class Documents:
    """The documents a projection changes while it applies one batch of events.

    Reads see the batch's own earlier writes; nothing reaches the store until the
    whole batch is applied together with its tracking position.
    """

    def __init__(self, view: ReadModelView) -> None:
        self._view = view
        self._pending: dict[tuple[str, str], Document | None] = {}

    def get(self, collection: str, key: str) -> Document | None:
        if (collection, key) in self._pending:
            pending = self._pending[(collection, key)]
            return None if pending is None else as_json(pending)
        stored = self._view.get(collection, key)
        return None if stored is None else stored.doc

    def put(self, collection: str, key: str, doc: Mapping[str, Any]) -> None:
        self._pending[(collection, key)] = as_json(doc)

    def delete(self, collection: str, key: str) -> None:
        self._pending[(collection, key)] = None

    @property
    def changes(self) -> list[Change]:
        return [Change(c, k, doc) for (c, k), doc in self._pending.items()]


class ReadModelView(TrackingRecorder, ABC):
    """One generation of one projection's documents, with its tracking positions."""

    @abstractmethod
    def apply(self, changes: Sequence[Change], tracking: Tracking) -> None:
        """Write ``changes`` and ``tracking`` atomically. A tracking position not
        beyond the recorded one raises eventsourcing's ``IntegrityError`` and
        writes nothing, so a batch is never applied twice."""

    @abstractmethod
    def get(self, collection: str, key: str) -> Stored | None:
        """A document of this generation."""

    def wait_for(self, application_name: str, position: int, timeout: float) -> None:
        """Block until ``position`` of ``application_name`` is applied, polling
        briefly at first (read-your-writes is usually a matter of milliseconds);
        :class:`RequestTimeout` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        interval = 0.002
        while not self.has_tracking_id(application_name, position):
            if time.monotonic() >= deadline:
                raise RequestTimeout(
                    f"the read model has not reached position {position} "
                    f"of {application_name} within {timeout}s",
                    position=position,
                )
            time.sleep(interval)
            interval = min(interval * 2, 0.05)


class ReadModelStore(ABC):
    """All generations of one projection's documents; reads go to the live one."""

    def __init__(self, projection: str) -> None:
        self.projection = projection

    @abstractmethod
    def live_generation(self) -> int:
        """The generation that serves reads (generation 1 is created on first use)."""

    @abstractmethod
    def view(self, generation: int) -> ReadModelView:
        """The view of ``generation``, created if it does not exist."""

    @abstractmethod
    def new_generation(self) -> int:
        """Create an empty generation after every existing one and return it."""

    @abstractmethod
    def promote(self, generation: int) -> None:
        """Make ``generation`` the live one, atomically for readers."""

    @abstractmethod
    def drop(self, generation: int) -> None:
        """Delete a generation that no longer serves reads."""

    @abstractmethod
    def get(self, collection: str, key: str) -> Stored | None:
        """A document of the live generation."""

    @abstractmethod
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
        """Documents of the live generation whose top-level fields equal ``where``,
        ordered by a top-level field (missing values last), one page."""

    @abstractmethod
    def count(self, collection: str, where: Mapping[str, Any] | None = None) -> int:
        """How many documents of the live generation match ``where``."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def open_store(settings: Settings, projection: str) -> ReadModelStore:
    """The store for ``projection`` that ``settings`` select: PostgreSQL; in
    the embedded mode SQLite files, or memory when the events are in memory."""
    if settings.persistence == "postgres":
        from ordersys.readmodels.postgres import PostgresReadModelStore

        return PostgresReadModelStore(settings, projection)
    if settings.persistence == "sqlite" and settings.sqlite_path != ":memory:":
        from ordersys.persistence.sqlite import sqlite_file
        from ordersys.readmodels.sqlite import SQLiteReadModelStore

        return SQLiteReadModelStore(sqlite_file(settings, projection), projection)
    from ordersys.readmodels.memory import MemoryReadModelStore

    return MemoryReadModelStore(projection)
