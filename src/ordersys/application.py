"""Event-sourced applications configured from :class:`~ordersys.settings.Settings`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    ProcessingEvent,
    ProjectorFunction,
    Repository,
    project_aggregate,
)
from eventsourcing.application import Application as _Application
from eventsourcing.domain import (
    BaseAggregate,
    DomainEventProtocol,
    MutableOrImmutableAggregate,
    TDomainEvent,
    TMutableOrImmutableAggregate,
)
from eventsourcing.persistence import RecordConflictError, Recording
from eventsourcing.utils import EnvType

from ordersys.aggregates import Aggregate
from ordersys.commands import Written
from ordersys.errors import Conflict, InvalidInput, NotFound, StorageTaken
from ordersys.observability.tracing import span, stamp
from ordersys.persistence.database import (
    claim_tables,
    creating_tables,
    ensure_schema,
    schema_name,
)
from ordersys.persistence.owners import claim_sqlite_tables
from ordersys.persistence.sqlite import sqlite_file
from ordersys.settings import Settings, load_settings

A = TypeVar("A", bound=Aggregate)

POSTGRES_FACTORIES = {
    "ordersys": "ordersys.persistence.recorders:Factory",
    "stock": "eventsourcing.postgres:Factory",
}
"""Infrastructure factory topic for each ``ORDERSYS_EVENT_STORE`` choice."""

SQLITE_FACTORY = "ordersys.persistence.sqlite_factory:Factory"
"""eventsourcing's SQLite factory, with tables named after each application."""


def persistence_env(settings: Settings, app_name: str) -> dict[str, str]:
    """The ``eventsourcing`` environment for ``app_name`` under ``settings``.

    On PostgreSQL each application gets its own schema (created if missing),
    so services can share a server without sharing tables.
    """
    if settings.persistence == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if settings.persistence == "sqlite":
        # In memory: named and shared, so every object in this process that
        # opens the same application sees the same events.
        path = sqlite_file(settings, app_name)
        return {"PERSISTENCE_MODULE": SQLITE_FACTORY, "SQLITE_DBNAME": path}
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


class VersionConflict(Conflict, RecordConflictError):
    """What :meth:`Application.save` raises for a stale version: a
    :class:`Conflict`, and eventsourcing's ``RecordConflictError``, so that code
    written for eventsourcing's ``save`` keeps catching it."""


class AggregateNotFound(NotFound, AggregateNotFoundError):
    """What an application's ``repository.get()`` raises for an unknown id: a
    :class:`NotFound`, and eventsourcing's ``AggregateNotFoundError``, which
    eventsourcing's own code (``id in repository``, snapshots) catches."""


class _Repository(Repository[UUID]):
    """eventsourcing's repository, raising :class:`AggregateNotFound`."""

    def get(
        self,
        aggregate_id: UUID,
        *,
        version: int | None = None,
        projector_func: ProjectorFunction[
            TMutableOrImmutableAggregate, TDomainEvent
        ] = project_aggregate,
        fastforward_skipping: bool = False,
        deepcopy_from_cache: bool = True,
    ) -> TMutableOrImmutableAggregate:
        try:
            return super().get(
                aggregate_id,
                version=version,
                projector_func=projector_func,
                fastforward_skipping=fastforward_skipping,
                deepcopy_from_cache=deepcopy_from_cache,
            )
        except AggregateNotFoundError:
            raise AggregateNotFound(
                f"aggregate {aggregate_id} not found", aggregate_id=str(aggregate_id)
            ) from None


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
        self._open(merged)

    def _open(self, env: dict[str, str]) -> None:
        """Open the store, claiming the tables named after this application
        there; refused, with nothing written, if another class owns them."""
        if "POSTGRES_SCHEMA" in env:
            schema = env["POSTGRES_SCHEMA"]
            with creating_tables(self.settings, schema):
                owner = claim_tables(
                    self.settings, schema, self._tables, self.qualified_name()
                )
                self._refuse_unless_owned(
                    owner, f"schema {schema!r}", "ORDERSYS_POSTGRES_SCHEMA"
                )
                super().__init__(env)
        elif env.get("PERSISTENCE_MODULE") == SQLITE_FACTORY:
            super().__init__(env)
            # Claimed once open: a database in memory lives while a connection
            # to it does, and eventsourcing's keeps one.
            path = env["SQLITE_DBNAME"]
            owner = claim_sqlite_tables(path, self._tables, self.qualified_name())
            try:
                self._refuse_unless_owned(
                    owner, f"SQLite database {path!r}", "ORDERSYS_SQLITE_PATH"
                )
            except StorageTaken:
                self.close()
                raise
        else:
            super().__init__(env)

    @classmethod
    def qualified_name(cls) -> str:
        """How a store records the application that owns its tables."""
        return f"{cls.__module__}.{cls.__qualname__}"

    @property
    def _tables(self) -> str:
        # eventsourcing names an application's tables after it, in lower case.
        return self.name.lower()

    def _refuse_unless_owned(self, owner: str, store: str, setting: str) -> None:
        if owner == self.qualified_name():
            return
        msg = (
            f"{self.qualified_name()} cannot use the tables named {self._tables!r} in "
            f"{store}: they belong to {owner}, another application of the same "
            f"name. Give one of them storage of its own with {setting}, or "
            "another name with a class attribute `name` (its tables are named "
            "after it)"
        )
        raise StorageTaken(
            msg, tables=self._tables, owner=owner, opener=self.qualified_name()
        )

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
        recordings = self.save(*aggregates)
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
        except NotFound:
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

    def save(
        self,
        *objs: MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None,
        **kwargs: Any,
    ) -> list[Recording[UUID]]:
        """eventsourcing's ``save``: the new events of ``objs``, atomically; an
        aggregate changed by someone else since it was loaded raises
        :class:`VersionConflict` (a :class:`Conflict`)."""
        try:
            return super().save(*objs, **kwargs)
        except RecordConflictError as e:
            ids = [str(o.id) for o in objs if isinstance(o, BaseAggregate)]
            raise VersionConflict(
                "the aggregate was changed by someone else; reload and retry",
                **({"aggregate_id": ids[0]} if ids else {}),
            ) from e

    def construct_repository(self) -> Repository[UUID]:
        repository = super().construct_repository()
        # Built by eventsourcing from its environment; only get() differs.
        repository.__class__ = _Repository
        return repository

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        # Every way of storing events (save, write, a process manager's
        # policy) passes here: the events keep the span they were written in.
        with span(f"append {self.name}", events=len(processing_event.events)):
            stamp(processing_event.events)
            return super()._record(processing_event)

    def head_position(self) -> int:
        """The position of the last event recorded by this application (0 if none)."""
        return self.recorder.max_notification_id() or 0
