"""ordersys' PostgreSQL recorders (the default event store)."""

from __future__ import annotations

from eventsourcing.postgres import PostgresFactory


class Factory(PostgresFactory):
    """Infrastructure factory for ordersys applications on PostgreSQL."""
