"""Read-model stores: named collections of JSON documents kept by projections.

A store holds one projection's documents in *generations*: the live one serves
reads while a rebuild fills the next, which is then promoted in one step. Each
generation is a *view* in ``eventsourcing``'s sense: a tracking recorder that
writes document changes and the position they came from in one transaction.
Adapters: memory, SQLite (the embedded mode), PostgreSQL.

*Record stores* (:mod:`ordersys.readmodels.records`) keep the documents of
consumers of integration events, changed in transactions that also record
each message applied: SQLite or PostgreSQL.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ordersys.readmodels.memory import MemoryReadModelStore
from ordersys.readmodels.records import Records, RecordStore, open_records
from ordersys.readmodels.records_sqlite import SQLiteRecordStore
from ordersys.readmodels.sqlite import SQLiteReadModelStore
from ordersys.readmodels.store import (
    Change,
    Documents,
    ReadModelStore,
    ReadModelView,
    Stored,
    open_store,
)

if TYPE_CHECKING:
    from ordersys.readmodels.postgres import PostgresReadModelStore
    from ordersys.readmodels.records_postgres import PostgresRecordStore

_NEED_POSTGRES = {
    "PostgresReadModelStore": "ordersys.readmodels.postgres",
    "PostgresRecordStore": "ordersys.readmodels.records_postgres",
}


def __getattr__(name: str) -> Any:
    # Imported when first used: they need the postgres extra.
    if name in _NEED_POSTGRES:
        return getattr(importlib.import_module(_NEED_POSTGRES[name]), name)
    raise AttributeError(f"module 'ordersys.readmodels' has no attribute {name!r}")


__all__ = [
    "Change",
    "Documents",
    "MemoryReadModelStore",
    "PostgresReadModelStore",
    "PostgresRecordStore",
    "ReadModelStore",
    "ReadModelView",
    "RecordStore",
    "Records",
    "SQLiteReadModelStore",
    "SQLiteRecordStore",
    "Stored",
    "open_records",
    "open_store",
]
