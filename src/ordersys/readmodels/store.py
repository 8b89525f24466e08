"""The read-model store port: what every adapter (memory, PostgreSQL) provides."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
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


Key = tuple[str, str]
"""A document's (collection, key)."""


class _JsonOnly(bytes):
    """JSON that ``orjson`` refused to write (integer keys, integers beyond 64
    bits) and ``json`` wrote: ``json`` reads it back too."""


_DUMP_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def encode(doc: Mapping[str, Any]) -> bytes:
    """``doc`` as JSON text: a snapshot, and what the adapters write."""
    try:
        return orjson.dumps(doc, option=_DUMP_OPTIONS)
    except TypeError:
        pass
    try:
        return _JsonOnly(json.dumps(doc).encode())
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"a read-model document must be JSON: {e}") from None


def decode(text: bytes) -> Document:
    """A fresh document from :func:`encode`'s text."""
    if isinstance(text, _JsonOnly):
        loaded: Document = json.loads(text)
        return loaded
    decoded: Document = orjson.loads(text)
    return decoded


class Change:
    """A document written (``doc``) or deleted (``doc is None``) by a batch.

    A batch's changes carry the JSON text they were snapshotted as, so writing
    them encodes nothing again; ``doc`` is decoded only if someone asks."""

    __slots__ = ("_doc", "_json", "collection", "key")

    def __init__(
        self,
        collection: str,
        key: str,
        doc: Document | None = None,
        *,
        json: bytes | None = None,
    ) -> None:
        self.collection = collection
        self.key = key
        self._doc = doc
        self._json = json

    @property
    def doc(self) -> Document | None:
        if self._doc is None and self._json is not None:
            self._doc = decode(self._json)
        return self._doc

    @property
    def json(self) -> bytes | None:
        """The document as JSON text (``None`` for a deletion)."""
        if self._json is None and self._doc is not None:
            self._json = encode(self._doc)
        return self._json

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Change):
            return NotImplemented
        return (self.collection, self.key, self.doc) == (
            other.collection,
            other.key,
            other.doc,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Change({self.collection!r}, {self.key!r}, {self.doc!r})"


def as_json(doc: Mapping[str, Any]) -> Document:
    """A JSON round trip: what any adapter will hand back later."""
    return decode(encode(doc))


class Documents:
    """The documents a projection changes while it applies one batch of events.

    Reads see the batch's own earlier writes; nothing reaches the store until the
    whole batch is applied together with its tracking position. A document
    read here is the caller's own copy: it changes nothing until it is put
    back. (A rebuild's documents hand out the document itself: change one only
    to put it back.)

    ``Documents(view)`` reads a document not yet written by the batch from
    ``view``. A runner passes instead what it already ``known``s of the
    committed documents (JSON text, ``None`` for absent): a key found neither
    there nor in the batch reads as absent and is noted in :attr:`missed`, so
    the runner can fetch them all in one query and apply the batch again.
    """

    def __init__(
        self,
        view: ReadModelView | None = None,
        *,
        known: Mapping[Key, bytes | None] | None = None,
    ) -> None:
        self._view = view
        self._known: Mapping[Key, bytes | None] = {} if known is None else known
        self.pending: dict[Key, bytes | None] = {}
        """The batch's writes as JSON text (``None``: deleted), by key."""
        self.missed: set[Key] = set()
        """Keys read that neither the batch nor ``known`` had (without a view)."""

    def get(self, collection: str, key: str) -> Document | None:
        ck = (collection, key)
        if ck in self.pending:
            text = self.pending[ck]
        elif ck in self._known:
            text = self._known[ck]
        elif self._view is not None:
            stored = self._view.get(collection, key)
            return None if stored is None else stored.doc
        else:
            self.missed.add(ck)
            return None
        return None if text is None else decode(text)

    def put(self, collection: str, key: str, doc: Mapping[str, Any]) -> None:
        self.pending[(collection, key)] = encode(doc)

    def delete(self, collection: str, key: str) -> None:
        self.pending[(collection, key)] = None

    @property
    def changes(self) -> list[Change]:
        return [Change(c, k, json=text) for (c, k), text in self.pending.items()]


@dataclass(frozen=True)
class Row:
    """A document of a rebuild, as JSON text, with the position that last
    changed it."""

    collection: str
    key: str
    json: bytes
    position: int


class ReadModelView(TrackingRecorder, ABC):
    """One generation of one projection's documents, with its tracking positions."""

    @abstractmethod
    def apply(
        self,
        changes: Sequence[Change],
        tracking: Tracking,
        *,
        after: int | None = None,
    ) -> None:
        """Write ``changes`` and ``tracking`` atomically. A tracking position not
        beyond the recorded one raises eventsourcing's ``IntegrityError`` and
        writes nothing, so a batch is never applied twice. With ``after``, the
        recorded position must also be exactly ``after`` (0: none yet): a
        runner that read the batch after ``after`` then knows nobody applied
        anything meanwhile, and may trust the documents it keeps in memory.
        Read models are rebuildable: adapters may commit these without
        waiting for the disk (PostgreSQL: ``synchronous_commit = off``)."""

    @abstractmethod
    def load(self, rows: Iterable[Row], tracking: Tracking) -> None:
        """Fill this generation, still empty, with a rebuild's ``rows`` and
        record ``tracking``, in one transaction and in bulk."""

    @abstractmethod
    def get_many(self, keys: Collection[Key]) -> dict[Key, bytes | None]:
        """The JSON text of each of ``keys`` (``None``: absent), in one query."""

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
