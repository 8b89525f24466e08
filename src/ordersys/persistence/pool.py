"""Connection reuse that keeps the busiest PostgreSQL backends hot.

psycopg's pool hands out its idle connections first-in first-out, so a single
writer's consecutive appends each run on a different server process, whose
caches have gone cold meanwhile: that alone cost a third of the append rate of
one writer in bench/eventstore.py. Handing out the most recently returned
connection first keeps one writer on one backend, and many writers on as few
backends as they need.
"""

from __future__ import annotations

from collections import deque
from typing import TypeVar

from eventsourcing.postgres import PostgresDatastore

T = TypeVar("T")


class _LastInFirstOut(deque[T]):
    """A deque whose ``popleft`` (the pool's "take an idle connection")
    takes the most recently returned one."""

    def popleft(self) -> T:
        return self.pop()


def reuse_recent_connections(datastore: PostgresDatastore) -> None:
    """Make ``datastore``'s pool hand out its most recently used connection first.

    Relies on psycopg_pool keeping idle connections in the deque ``_pool``;
    if a later version does not, this does nothing.
    """
    pool = datastore.pool
    idle = getattr(pool, "_pool", None)
    if type(idle) is deque:
        pool._pool = _LastInFirstOut(idle)
