"""Read-model stores: named collections of JSON documents kept by projections.

A store holds one projection's documents in *generations*: the live one serves
reads while a rebuild fills the next, which is then promoted in one step. Each
generation is a *view* in ``eventsourcing``'s sense: a tracking recorder that
writes document changes and the position they came from in one transaction.
"""

from ordersys.readmodels.memory import MemoryReadModelStore
from ordersys.readmodels.postgres import PostgresReadModelStore
from ordersys.readmodels.store import (
    Change,
    Documents,
    ReadModelStore,
    ReadModelView,
    Stored,
    open_store,
)

__all__ = [
    "Change",
    "Documents",
    "MemoryReadModelStore",
    "PostgresReadModelStore",
    "ReadModelStore",
    "ReadModelView",
    "Stored",
    "open_store",
]
