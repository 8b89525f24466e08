"""Event-sourced applications configured from :class:`~ordersys.settings.Settings`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from copy import deepcopy
from typing import Any, ClassVar, TypeVar, cast
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
from eventsourcing.persistence import RecordConflictError, Recording, StoredEvent
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
        "POSTGRES_NOTIFY": "y" if settings.postgres_notify else "n",
    }


def _not_found(aggregate_type: type[Any], aggregate_id: UUID | str) -> NotFound:
    return NotFound(
        f"{aggregate_type.__name__} {aggregate_id} not found",
        aggregate_id=str(aggregate_id),
    )


def _of_type(
    aggregate_type: type[A], aggregate: Any, aggregate_id: UUID | None = None
) -> A:
    """``aggregate``, or :class:`NotFound` if it is not an ``aggregate_type``."""
    if not isinstance(aggregate, aggregate_type):
        raise _not_found(aggregate_type, aggregate_id or aggregate.id)
    return aggregate


class VersionConflict(Conflict, RecordConflictError):
    """What :meth:`Application.save` raises for a stale version: a
    :class:`Conflict`, and eventsourcing's ``RecordConflictError``, so that code
    written for eventsourcing's ``save`` keeps catching it."""


class AggregateNotFound(NotFound, AggregateNotFoundError):
    """What an application's ``repository.get()`` raises for an unknown id: a
    :class:`NotFound`, and eventsourcing's ``AggregateNotFoundError``, which
    eventsourcing's own code (``id in repository``, snapshots) catches."""


def _project(
    aggregate: TMutableOrImmutableAggregate | None,
    domain_events: Iterable[DomainEventProtocol[Any]],
) -> TMutableOrImmutableAggregate | None:
    """eventsourcing's ``project_aggregate`` without its assertion that each
    event is a ``CanMutateProtocol``: an ``isinstance`` of a runtime protocol,
    which costs more (15 µs) than applying the event."""
    for domain_event in domain_events:
        aggregate = cast(Any, domain_event).mutate(aggregate)
    return aggregate


class _Repository(Repository[UUID]):
    """eventsourcing's repository, raising :class:`AggregateNotFound`; it also
    reads several aggregates at once (:meth:`get_many`), and brings cached
    ones up to date and copies them under their locks."""

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
        if projector_func is project_aggregate:
            projector_func = _project
        try:
            if (
                self.cache is None
                or version is not None
                or not self.fastforward
                or fastforward_skipping
                or self.fastforward_skipping
            ):
                return super().get(
                    aggregate_id,
                    version=version,
                    projector_func=projector_func,
                    fastforward_skipping=fastforward_skipping,
                    deepcopy_from_cache=deepcopy_from_cache,
                )
            return self._fastforwarded(
                aggregate_id,
                projector_func,
                copy=deepcopy_from_cache and self.deepcopy_from_cache,
            )
        except AggregateNotFoundError:
            raise AggregateNotFound(
                f"aggregate {aggregate_id} not found", aggregate_id=str(aggregate_id)
            ) from None

    def get_many(
        self, aggregate_ids: Sequence[UUID]
    ) -> list[MutableOrImmutableAggregate[UUID]]:
        """The aggregates of ``aggregate_ids``, in one read of the store if its
        recorder can (``select_events_after``), else one read each.

        Cached aggregates are read from their version on, as :meth:`get` does,
        under their locks (taken in the order of their ids, so two callers
        never wait for each other); an id asked twice gives two copies.
        """
        select_after = getattr(self.event_store.recorder, "select_events_after", None)
        if select_after is None:
            return [self.get(i) for i in aggregate_ids]
        unique = list(dict.fromkeys(aggregate_ids))
        try:
            with contextlib.ExitStack() as locked:
                if self.cache is not None:
                    for aggregate_id in sorted(unique, key=str):
                        lock = self._use_fastforward_lock(aggregate_id)
                        locked.callback(self._disuse_fastforward_lock, aggregate_id)
                        locked.enter_context(lock)
                current = self._current(unique, select_after)
                copy = self.cache is not None and self.deepcopy_from_cache
                aggregates = []
                seen: set[UUID] = set()
                for aggregate_id in aggregate_ids:
                    aggregate = current[aggregate_id]
                    copied = copy or aggregate_id in seen
                    aggregates.append(deepcopy(aggregate) if copied else aggregate)
                    seen.add(aggregate_id)
                return aggregates
        except AggregateNotFoundError as e:
            missing = e.args[0] if e.args else ""
            raise AggregateNotFound(
                f"aggregate {missing} not found", aggregate_id=str(missing)
            ) from None

    def _current(
        self,
        aggregate_ids: list[UUID],
        select_after: Callable[[list[tuple[UUID, int]]], Sequence[StoredEvent]],
    ) -> dict[UUID, MutableOrImmutableAggregate[UUID]]:
        """Each aggregate brought up to date from the cache (or a snapshot) and
        the events one read finds after it."""
        base: dict[UUID, MutableOrImmutableAggregate[UUID]] = {}
        versions: list[tuple[UUID, int]] = []
        for aggregate_id in aggregate_ids:
            cached = None
            if self.cache is not None:
                with contextlib.suppress(KeyError):
                    cached = self.cache.get(aggregate_id)
            if cached is not None:
                base[aggregate_id] = cached
                versions.append((aggregate_id, cached.version))
            elif self.snapshot_store is not None:
                base[aggregate_id] = self._reconstruct_aggregate(
                    aggregate_id, None, cast(Any, _project)
                )
            else:
                versions.append((aggregate_id, 0))
        new_events: dict[UUID, list[DomainEventProtocol[UUID]]] = {}
        to_domain_event = self.event_store.mapper.to_domain_event
        for stored in select_after(versions):
            domain_event = to_domain_event(stored)
            new_events.setdefault(domain_event.originator_id, []).append(domain_event)
        current: dict[UUID, MutableOrImmutableAggregate[UUID]] = {}
        for aggregate_id in aggregate_ids:
            try:
                aggregate = _project(
                    base.get(aggregate_id), new_events.get(aggregate_id, ())
                )
            except BaseException:
                if self.cache is not None:
                    with contextlib.suppress(KeyError):
                        self.cache.get(aggregate_id, evict=True)
                raise
            if aggregate is None:
                raise AggregateNotFoundError(aggregate_id)
            if self.cache is not None:
                self.cache.put(aggregate_id, aggregate)
            current[aggregate_id] = aggregate
        return current

    def _fastforwarded(
        self,
        aggregate_id: UUID,
        projector_func: ProjectorFunction[TMutableOrImmutableAggregate, TDomainEvent],
        *,
        copy: bool,
    ) -> TMutableOrImmutableAggregate:
        """The cached aggregate brought up to date with the events stored after
        its version (all of them if it is not cached), and a copy of it.

        The library's own path copies outside the aggregate's lock, so a copy
        could catch another thread's fast-forward half done; here the read,
        the projection and the copy happen under it. Only states made of
        stored events enter the cache (never a handler's changed copy), so
        a cached aggregate is at worst behind: this read brings it forward,
        and a write from a state that went stale meanwhile is refused by the
        store's (id, version) key. A projection that fails half-way leaves
        the cache.
        """
        assert self.cache is not None
        lock = self._use_fastforward_lock(aggregate_id)
        try:
            with lock:
                aggregate: TMutableOrImmutableAggregate | None
                try:
                    cached = self.cache.get(aggregate_id)
                except KeyError:
                    aggregate = self._reconstruct_aggregate(
                        aggregate_id, None, projector_func
                    )
                else:
                    try:
                        aggregate = projector_func(
                            cast(TMutableOrImmutableAggregate, cached),
                            cast(
                                "Iterable[TDomainEvent]",
                                self.event_store.get(
                                    originator_id=aggregate_id, gt=cached.version
                                ),
                            ),
                        )
                    except BaseException:
                        with contextlib.suppress(KeyError):
                            self.cache.get(aggregate_id, evict=True)
                        raise
                    if aggregate is None:
                        raise AggregateNotFoundError(aggregate_id)
                self.cache.put(aggregate_id, aggregate)
                return deepcopy(aggregate) if copy else aggregate
        finally:
            self._disuse_fastforward_lock(aggregate_id)


class Application(_Application[UUID]):
    """An ``eventsourcing`` application built from settings.

    Subclasses list their aggregate classes in ``aggregate_types`` so that
    ``ORDERSYS_SNAPSHOT_INTERVALS`` can name them; ``snapshotting_intervals``
    set on the class still works as in ``eventsourcing``.
    """

    aggregate_types: ClassVar[Sequence[type[Aggregate]]] = ()
    aggregate_cache_size: ClassVar[int] = 0
    """How many aggregates to keep in memory between commands (0: none). A
    cached aggregate is read with only the events stored after its version,
    one short read instead of its whole history. ``AGGREGATE_CACHE_MAXSIZE``
    in the ``env`` argument overrides it."""

    def __init__(
        self, settings: Settings | None = None, env: EnvType | None = None
    ) -> None:
        self.settings = settings or load_settings()
        # An instance attribute, read by eventsourcing when it takes snapshots.
        self.snapshotting_intervals = self._intervals(self.settings)  # type: ignore[misc]
        merged = persistence_env(self.settings, self.name)
        if self.snapshotting_intervals:
            merged["IS_SNAPSHOTTING_ENABLED"] = "y"
        if self.aggregate_cache_size > 0:
            merged["AGGREGATE_CACHE_MAXSIZE"] = str(self.aggregate_cache_size)
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
            aggregate = _of_type(aggregate_type, self.repository.get(aggregate_id))
        except NotFound:
            raise _not_found(aggregate_type, aggregate_id) from None
        if expected_version is not None and aggregate.version != expected_version:
            raise Conflict(
                f"{aggregate_type.__name__} {aggregate_id} is at version "
                f"{aggregate.version}, not {expected_version}",
                aggregate_id=str(aggregate_id),
                current_version=aggregate.version,
            )
        return aggregate

    def get_many(
        self, aggregate_type: type[A], aggregate_ids: Sequence[UUID]
    ) -> list[A]:
        """Load several aggregates in one read of the store (one per aggregate
        on stores that cannot); :class:`NotFound` if one of them is not there
        or not of that type (``Aggregate`` accepts any)."""
        repository = cast(_Repository, self.repository)
        try:
            aggregates = repository.get_many(aggregate_ids)
        except NotFound as e:
            missing = e.details.get("aggregate_id", "")
            raise _not_found(aggregate_type, missing) from None
        return [
            _of_type(aggregate_type, a, aggregate_id)
            for a, aggregate_id in zip(aggregates, aggregate_ids, strict=True)
        ]

    def save(
        self,
        *objs: MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None,
        **kwargs: Any,
    ) -> list[Recording[UUID]]:
        """eventsourcing's ``save``: the new events of ``objs``, atomically; an
        aggregate changed by someone else since it was loaded raises
        :class:`VersionConflict` (a :class:`Conflict`)."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for obj in objs:
            # The library's collect_events asks each aggregate whether it is
            # an event: an isinstance of a runtime protocol, 25 µs each.
            if isinstance(obj, BaseAggregate):
                processing_event.events.extend(obj.collect_events())
                processing_event.aggregates[obj.id] = obj
            else:
                processing_event.collect_events(obj)
        processing_event.saved_kwargs.update(kwargs)
        try:
            # The library's save, from its collected events on.
            recordings = self._record(processing_event)
        except RecordConflictError as e:
            ids = [str(o.id) for o in objs if isinstance(o, BaseAggregate)]
            raise VersionConflict(
                "the aggregate was changed by someone else; reload and retry",
                **({"aggregate_id": ids[0]} if ids else {}),
            ) from e
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)
        return recordings

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
