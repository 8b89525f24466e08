"""Event-sourced applications configured from :class:`~ordersys.settings.Settings`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProcessingEvent
from eventsourcing.application import Application as _Application
from eventsourcing.persistence import RecordConflictError, Recording
from eventsourcing.utils import EnvType

from ordersys.aggregates import Aggregate
from ordersys.commands import Written
from ordersys.errors import Conflict, InvalidInput, NotFound
from ordersys.observability.tracing import span, stamp
from ordersys.persistence.database import creating_tables, ensure_schema, schema_name
from ordersys.settings import Settings, load_settings

A = TypeVar("A", bound=Aggregate)

POSTGRES_FACTORIES = {
    "ordersys": "ordersys.persistence.recorders:Factory",
    "stock": "eventsourcing.postgres:Factory",
}
"""Infrastructure factory topic for each ``ORDERSYS_EVENT_STORE`` choice."""


def persistence_env(settings: Settings, app_name: str) -> dict[str, str]:
    """The ``eventsourcing`` environment for ``app_name`` under ``settings``.

    On PostgreSQL each application gets its own schema (created if missing),
    so services can share a server without sharing tables.
    """
    if settings.persistence == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if settings.persistence == "sqlite":
        path = settings.sqlite_path
        if path == ":memory:":
            # Named and shared, so every object in this process that opens the
            # same application sees the same events.
            path = f"file:ordersys_{schema_name(app_name)}?mode=memory&cache=shared"
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": path}
    schema = settings.postgres_schema or schema_name(app_name)
    ensure_schema(settings, schema)
    return {
        "PERSISTENCE_MODULE": POSTGRES_FACTORIES[settings.event_store],
        "POSTGRES_HOST": settings.postgres_host,
        "POSTGRES_PORT": str(settings.postgres_port),
        "POSTGRES_USER": settings.postgres_user,
        "POSTGRES_PASSWORD": settings.postgres_password.get_secret_value(),
        "POSTGRES_DBNAME": settings.postgres_dbname,
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": str(settings.postgres_pool_size),
        "POSTGRES_MAX_OVERFLOW": str(settings.postgres_max_overflow),
        "POSTGRES_CONNECT_TIMEOUT": str(settings.postgres_connect_timeout),
    }


class Application(_Application[UUID]):
    """An ``eventsourcing`` application built from settings.

    Subclasses list their aggregate classes in ``aggregate_types`` so that
    ``ORDERSYS_SNAPSHOT_INTERVALS`` can name them; ``snapshotting_intervals``
    set on the class still works as in ``eventsourcing``.
    """

    aggregate_types: ClassVar[Sequence[type[Aggregate]]] = ()

    def __init__(
        self, settings: Settings | None = None, env: EnvType | None = None
    ) -> None:
        self.settings = settings or load_settings()
        # An instance attribute, read by eventsourcing when it takes snapshots.
        self.snapshotting_intervals = self._intervals(self.settings)  # type: ignore[misc]
        merged = persistence_env(self.settings, self.name)
        if self.snapshotting_intervals:
            merged["IS_SNAPSHOTTING_ENABLED"] = "y"
        merged.update(env or {})
        if "POSTGRES_SCHEMA" in merged:
            with creating_tables(self.settings, merged["POSTGRES_SCHEMA"]):
                super().__init__(merged)
        else:
            super().__init__(merged)

    @classmethod
    def _intervals(cls, settings: Settings) -> dict[type[Any], int]:
        intervals: dict[type[Any], int] = dict(cls.snapshotting_intervals)
        by_name = {t.__name__: t for t in cls.aggregate_types}
        for name, interval in settings.snapshot_intervals.items():
            if name not in by_name:
                known = ", ".join(sorted(by_name)) or "none"
                msg = (
                    f"ORDERSYS_SNAPSHOT_INTERVALS names {name!r}, which is not an "
                    f"aggregate type of {cls.name} (known: {known})"
                )
                raise InvalidInput(msg)
            intervals[by_name[name]] = interval
        return {t: n for t, n in intervals.items() if n > 0}

    def write(self, *aggregates: Aggregate) -> Written:
        """Save ``aggregates`` atomically; a stale version raises :class:`Conflict`.

        Returns what the first aggregate became, with the position of the last
        event written, for read-your-writes.
        """
        try:
            recordings = self.save(*aggregates)
        except RecordConflictError as e:
            raise Conflict(
                "the aggregate was changed by someone else; reload and retry",
                aggregate_id=str(aggregates[0].id),
            ) from e
        positions = [
            r.notification.id for r in recordings if r.notification.id is not None
        ]
        return Written(
            aggregate_id=aggregates[0].id,
            version=aggregates[0].version,
            position=max(positions) if positions else None,
        )

    def get(
        self,
        aggregate_type: type[A],
        aggregate_id: UUID,
        expected_version: int | None = None,
    ) -> A:
        """Load an aggregate; :class:`NotFound` if there is none of that type,
        :class:`Conflict` if ``expected_version`` is not its current version."""
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(
                f"{aggregate_type.__name__} {aggregate_id} not found",
                aggregate_id=str(aggregate_id),
            ) from None
        if not isinstance(aggregate, aggregate_type):
            raise NotFound(
                f"{aggregate_type.__name__} {aggregate_id} not found",
                aggregate_id=str(aggregate_id),
            )
        if expected_version is not None and aggregate.version != expected_version:
            raise Conflict(
                f"{aggregate_type.__name__} {aggregate_id} is at version "
                f"{aggregate.version}, not {expected_version}",
                aggregate_id=str(aggregate_id),
                current_version=aggregate.version,
            )
        return aggregate

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        # Every way of storing events (save, write, a process manager's
        # policy) passes here: the events keep the span they were written in.
        with span(f"append {self.name}", events=len(processing_event.events)):
            stamp(processing_event.events)
            return super()._record(processing_event)

    def head_position(self) -> int:
        """The position of the last event recorded by this application (0 if none)."""
        return self.recorder.max_notification_id() or 0
