"""Record stores: the documents a consumer of integration events keeps.

A consumer (the analytics of orders, the notifications of customers) keeps
its state as JSON documents in named collections, like a read model, but it
is fed by messages rather than by one event store in order: each message is
applied in one transaction that first records the message's identity
(:meth:`Records.first_delivery`, or :meth:`Records.first_deliveries` for a
batch of messages applied together), so a redelivered one changes nothing.

A store is durable by default: a transaction that has committed survives a
crash of the server. A consumer whose documents can be rebuilt (analytics,
say: replay its events) may open its store with ``durable=False``: its
transactions commit with PostgreSQL's ``synchronous_commit = off``, which
spares the wait for the disk; a crash of the server (not of the consumer) may
then lose the last ~600 ms of its commits, the documents together with the
dedupe records of the messages applied to them (never one without the other,
so nothing is applied twice), though the broker saw those messages
acknowledged. A store whose documents are effects (the notifications a
customer is sent) stays durable. SQLite, for the embedded mode, is durable
either way.

In a transaction (:meth:`RecordStore.transaction`) a document read is locked
until the transaction ends, so read-change-write is safe against another
instance of the consumer; :meth:`Records.find` there passes by documents that
another transaction holds, which makes a collection a work queue (claim the
next pending documents). :meth:`RecordStore.reading` reads without locks.

Documents are kept in the order they were first written: that is the order
of a ``find`` without ``order_by``, and how ties are broken with it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ordersys.errors import InvalidInput
from ordersys.readmodels.store import Document, as_json

if TYPE_CHECKING:
    from ordersys.settings import Settings


class Records(ABC):
    """What one transaction of a record store reads and writes."""

    @abstractmethod
    def get(self, collection: str, key: str) -> Document | None:
        """The document, or None."""

    @abstractmethod
    def put(self, collection: str, key: str, doc: Mapping[str, Any]) -> None:
        """Write the document (JSON), replacing any under that key."""

    @abstractmethod
    def delete(self, collection: str, key: str) -> None:
        """Remove the document, if there is one."""

    @abstractmethod
    def find(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        *,
        order_by: str | None = None,
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Document]:
        """Documents whose top-level fields equal the scalars of ``where``,
        ordered by a top-level field (missing values last) or by when they
        were first written; every one when ``limit`` is None."""

    @abstractmethod
    def count(self, collection: str, where: Mapping[str, Any] | None = None) -> int:
        """How many documents match ``where``."""

    @abstractmethod
    def first_delivery(self, consumer: str, message_id: str) -> bool:
        """Record that ``consumer`` applies ``message_id`` in this transaction;
        False if it had been recorded already (the message is a duplicate)."""

    @abstractmethod
    def first_deliveries(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        """Record that ``consumer`` applies each of ``message_ids`` in this
        transaction, all at once; those that had not been recorded already."""

    @abstractmethod
    def processed_at(
        self, consumer: str, message_ids: Sequence[str]
    ) -> dict[str, datetime]:
        """When each of ``message_ids`` that ``consumer`` applied was applied."""


class RecordStore(ABC):
    """Collections of documents and the messages applied to them."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Records]:
        """A transaction that commits when the block ends, and writes nothing
        if it raises."""

    @abstractmethod
    def reading(self) -> AbstractContextManager[Records]:
        """A transaction to read in, taking no locks."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def json_text(doc: Mapping[str, Any]) -> str:
    """``doc`` as the JSON text every adapter stores (refused unless JSON)."""
    return json.dumps(as_json(doc))


def scalar_filter(where: Mapping[str, Any] | None) -> dict[str, Any]:
    """``where``, refused unless each value is a JSON scalar."""
    for field, value in (where or {}).items():
        if not isinstance(value, str | int | float | bool) and value is not None:
            raise InvalidInput(
                f"a record filter compares scalars; {field} is {type(value).__name__}",
                field=field,
            )
    return dict(where or {})


def open_records(settings: Settings, name: str, *, durable: bool = True) -> RecordStore:
    """The record store ``name`` that ``settings`` select: in PostgreSQL (in
    the configured schema, else one named ``name``), or SQLite in the embedded
    mode (see :func:`~ordersys.persistence.sqlite.sqlite_file`). Stores of
    different names never share documents, wherever they are. ``durable=False``
    is for documents that can be rebuilt (see above)."""
    if settings.persistence == "postgres":
        from ordersys.readmodels.records_postgres import PostgresRecordStore

        schema = settings.postgres_schema or name
        return PostgresRecordStore(settings, schema, name, durable=durable)
    from ordersys.persistence.sqlite import sqlite_file
    from ordersys.readmodels.records_sqlite import SQLiteRecordStore

    return SQLiteRecordStore(sqlite_file(settings, name), name)
