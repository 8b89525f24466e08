"""Event-sourced applications configured from :class:`~ordersys.settings.Settings`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
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
from ordersys.unit_of_work import PendingWrites

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
    ones up to date and copies them under their locks. Inside a batch of
    commands (:mod:`ordersys.unit_of_work`) it reads what the batch wrote
    before the store."""

    pending: ContextVar[PendingWrites | None]
    trusted = False
    """Whether cached aggregates are used as they are, without reading the
    events stored after them (see ``Application.aggregate_cache_trusted``)."""

    def remember(self, aggregates: Iterable[Any]) -> None:
        """Cache copies of ``aggregates`` as they were just recorded."""
        if self.cache is not None and self.trusted:
            for aggregate in aggregates:
                self.cache.put(aggregate.id, deepcopy(aggregate))

    def forget(self, aggregate_ids: Iterable[UUID]) -> None:
        """Drop ``aggregate_ids`` from the cache: they may be stale."""
        if self.cache is not None:
            for aggregate_id in aggregate_ids:
                with contextlib.suppress(KeyError):
                    self.cache.get(aggregate_id, evict=True)

    def _pending_copy(self, aggregate_id: UUID) -> Any:
        pending = self.pending.get()
        return None if pending is None else pending.copy_of(aggregate_id)

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
        if version is None and (written := self._pending_copy(aggregate_id)):
            return cast(TMutableOrImmutableAggregate, written)
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
        pending = self.pending.get()
        if select_after is None or (
            pending is not None and any(i in pending.aggregates for i in aggregate_ids)
        ):
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
                if not self.trusted:
                    versions.append((aggregate_id, cached.version))
            elif self.snapshot_store is not None:
                base[aggregate_id] = self._reconstruct_aggregate(
                    aggregate_id, None, cast(Any, _project)
                )
            else:
                versions.append((aggregate_id, 0))
        new_events: dict[UUID, list[DomainEventProtocol[UUID]]] = {}
        to_domain_event = self.event_store.mapper.to_domain_event
        for stored in select_after(versions) if versions else ():
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
                    if self.trusted:
                        trusted = cast(TMutableOrImmutableAggregate, cached)
                        return deepcopy(trusted) if copy else trusted
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
    aggregate_cache_trusted: ClassVar[bool] = False
    """Whether a cached aggregate is used as it is, without even that read:
    for aggregates that this process alone writes, or whose commands may
    decide on a stale copy when another process wrote meanwhile, because
    the write is refused then. Recorded aggregates enter the cache; a write
    refused for a stale version (:class:`VersionConflict`) evicts them, so
    the command's retry reads the store. Queries that read aggregates, not a
    read model, may see a stale copy when other processes write too."""

    def __init__(
        self, settings: Settings | None = None, env: EnvType | None = None
    ) -> None:
        self.settings = settings or load_settings()
        self._pending: ContextVar[PendingWrites | None] = ContextVar(
            f"ordersys_pending_{id(self)}", default=None
        )
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
        event written, for read-your-writes. Inside :meth:`writing_together`
        the events are recorded at the block's end, and the position is
        filled in then (see :mod:`ordersys.unit_of_work`).
        """
        pending = self._pending.get()
        if pending is not None:
            return pending.add(aggregates)
        recordings = self.save(*aggregates)
        positions = [
            r.notification.id for r in recordings if r.notification.id is not None
        ]
        return Written(
            aggregate_id=aggregates[0].id,
            version=aggregates[0].version,
            position=max(positions) if positions else None,
        )

    @contextlib.contextmanager
    def writing_together(self) -> Iterator[PendingWrites]:
        """What :meth:`write` is given on this thread in the block is recorded
        at its end, in one transaction (nothing if the block raises); reads
        in the block see it first. A :class:`VersionConflict` at the end
        means none of it was recorded. Nested, the inner block is part of
        the outer one."""
        pending = self._pending.get()
        if pending is not None:
            yield pending
            return
        pending = PendingWrites()
        token = self._pending.set(pending)
        try:
            yield pending
        finally:
            self._pending.reset(token)
        if pending.events:
            pending.recorded(
                self._save_processing(
                    pending.processing_event(), list(pending.aggregates)
                )
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
        ids = [o.id for o in objs if isinstance(o, BaseAggregate)]
        return self._save_processing(processing_event, ids)

    def _save_processing(
        self, processing_event: ProcessingEvent[UUID], ids: Sequence[UUID]
    ) -> list[Recording[UUID]]:
        """The library's save, from its collected events on."""
        repository = cast(_Repository, self.repository)
        try:
            recordings = self._record(processing_event)
        except RecordConflictError as e:
            repository.forget(processing_event.aggregates)
            raise VersionConflict(
                "the aggregate was changed by someone else; reload and retry",
                **({"aggregate_id": str(ids[0])} if ids else {}),
            ) from e
        repository.remember(processing_event.aggregates.values())
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)
        return recordings

    def construct_repository(self) -> Repository[UUID]:
        repository = super().construct_repository()
        # Built by eventsourcing from its environment; only get() differs.
        repository.__class__ = _Repository
        cast(_Repository, repository).pending = self._pending
        cast(_Repository, repository).trusted = self.aggregate_cache_trusted
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
