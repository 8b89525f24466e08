"""Projections: read models kept from an application's events.

A projection is plain Python: ``apply(event, docs)`` turns one domain event into
changes of JSON documents. The :class:`ProjectionRunner` feeds it the
application's events in batches; each batch's changes are written in one
transaction with the position of its last event, so after a crash the runner
resumes exactly after the last committed batch: no event is missed or applied
twice. After the commit the changed documents are written through to the
cache, and :class:`ReadModel` reads through the cache to the store.

Projections are for state, not side effects: a rebuild replays every event,
so sending mail or publishing from ``apply`` would repeat them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.projection import Projection as _Projection

from ordersys.application import Application
from ordersys.cache import ReadModelCache
from ordersys.errors import InfrastructureUnavailable, InvalidInput
from ordersys.milestones import Milestones
from ordersys.outages import Outages
from ordersys.readmodels.store import (
    Change,
    Document,
    Documents,
    ReadModelStore,
    ReadModelView,
    open_store,
)

logger = logging.getLogger("ordersys.projections")

P = TypeVar("P", bound="Projection")


class Projection(_Projection[ReadModelView], ABC):
    """Base class of projections. Subclasses implement :meth:`apply`."""

    @abstractmethod
    def apply(self, domain_event: Any, docs: Documents) -> None:
        """Change ``docs`` for ``domain_event``; ignore events of no interest."""

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Apply one event (the ``eventsourcing`` projection interface)."""
        self.process_batch([(domain_event, tracking)])

    def process_batch(self, batch: Sequence[tuple[Any, Tracking]]) -> list[Change]:
        """Apply ``batch`` and record it with its last position, atomically."""
        docs = Documents(self.view)
        for domain_event, _ in batch:
            self.apply(domain_event, docs)
        changes = docs.changes
        self.view.apply(changes, batch[-1][1])
        return changes


def _cache_key(change: Change) -> str:
    return f"{change.collection}:{change.key}"


class ProjectionRunner(Generic[P]):
    """Runs a projection of ``application``'s events, in a thread or step by step.

    ``run_once()`` applies one batch and is what tests call; ``start()`` runs
    batches in a thread until ``stop()``. Failures are logged and retried with
    backoff, never skipped: a stuck projection shows as a growing :meth:`lag`.
    """

    def __init__(
        self,
        projection_class: type[P],
        application: Application,
        *,
        store: ReadModelStore | None = None,
        cache: ReadModelCache | None = None,
    ) -> None:
        self.application = application
        self.projection_class = projection_class
        settings = application.settings
        self.store = store or open_store(settings, projection_class.name)
        self.cache = cache
        self.batch_size = settings.projection_batch_size
        self.poll_interval = settings.projection_poll_interval
        self.generation = self.store.live_generation()
        self.projection: P = projection_class(self.store.view(self.generation))
        self.last_error: BaseException | None = None
        self._lock = threading.Lock()
        self.outages = Outages(f"projection {projection_class.name}")
        """The servers the runner is waiting for (outages are not failures)."""
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._cache_dirty = False
        self.milestones = Milestones()
        """When the live read model reached each position (for the console)."""
        self.paused = False
        """Set by an operator: the thread applies nothing until resumed."""
        self.rebuilding: P | None = None
        """The generation being rebuilt, while :meth:`rebuild` runs."""

    @property
    def namespace(self) -> str:
        """The cache namespace of this projection's documents."""
        return self.store.projection

    def position(self) -> int:
        """The position of the last event applied to the live generation."""
        view = self.projection.view
        return view.max_tracking_id(self.application.name) or 0

    def lag(self) -> int:
        """How many positions the live read model is behind the event store."""
        return max(self.application.head_position() - self.position(), 0)

    def wait(self, position: int, timeout: float = 5.0) -> None:
        """Block until ``position`` is applied (read-your-writes), or raise
        :class:`~ordersys.errors.RequestTimeout`."""
        self.projection.view.wait_for(self.application.name, position, timeout)

    def caught_up(self, position: int | None, timeout: float = 5.0) -> None:
        """Wait (bounded) until a client's write at ``position`` is applied;
        nothing if ``position`` is None. A position past the last event
        written is refused at once: no wait would ever see it."""
        if position is None:
            return
        head = self.application.head_position()
        if position > head:
            raise InvalidInput(
                f"after_position {position} is past the last event written ({head})",
                field="after_position",
            )
        self.wait(position, timeout)

    def run_once(self) -> int:
        """Apply the next batch of events; returns how many there were."""
        with self._lock:
            return self._run_batch(self.projection, write_cache=True)

    def catch_up(self) -> None:
        """Apply batches until no event is left."""
        while self.run_once():
            pass

    def _run_batch(self, projection: P, *, write_cache: bool) -> int:
        app = self.application
        position = projection.view.max_tracking_id(app.name) or 0
        notifications = app.recorder.select_notifications(
            start=position, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        batch = [
            (app.mapper.to_domain_event(n), Tracking(app.name, n.id))
            for n in notifications
        ]
        try:
            changes = projection.process_batch(batch)
        except IntegrityError:
            # Another runner of this projection applied the batch first.
            logger.info("%s: batch after %s already applied", self.namespace, position)
            return len(notifications)
        if write_cache:
            self.milestones.reached(notifications[-1].id)
            self._write_through(changes, notifications[-1].id)
        return len(notifications)

    def _write_through(self, changes: list[Change], position: int) -> None:
        if self.cache is None:
            return
        try:
            if self._cache_dirty:
                # Writes were missed while the cache was down: start afresh.
                self.cache.clear(self.namespace)
                self._cache_dirty = False
            for change in changes:
                self.cache.put(self.namespace, _cache_key(change), change.doc, position)
        except InfrastructureUnavailable as e:
            # Reads pass the cache by meanwhile: note the outage once, go on.
            self.outages.noticed(e)
            self._cache_dirty = True
            return
        for server in list(self.outages.down):
            self.outages.over(server)

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild the read model from position 0 into a new generation while
        the live one keeps serving reads, then swap it in; returns the new
        generation. Running or not, the runner continues on the new one.
        ``progress(position, head)`` hears of each batch applied."""
        generation = self.store.new_generation()
        fresh = self.projection_class(self.store.view(generation))
        self.rebuilding = fresh
        try:
            while self._run_batch(fresh, write_cache=False):
                self._report(fresh, progress)
            with self._lock:
                while self._run_batch(fresh, write_cache=False):
                    self._report(fresh, progress)
                self.store.promote(generation)
                old, self.generation, self.projection = (
                    self.generation,
                    generation,
                    fresh,
                )
        finally:
            self.rebuilding = None
        self._clear_cache()
        self.store.drop(old)
        logger.info("%s: generation %s is live", self.namespace, generation)
        return generation

    def _report(self, fresh: P, progress: Callable[[int, int], None] | None) -> None:
        if progress is not None:
            name = self.application.name
            applied = fresh.view.max_tracking_id(name) or 0
            progress(applied, self.application.head_position())

    def _clear_cache(self) -> None:
        if self.cache is None:
            return
        try:
            self.cache.clear(self.namespace)
        except InfrastructureUnavailable as e:
            logger.warning("%s: cache not cleared: %s", self.namespace, e.message)
            self._cache_dirty = True

    def start(self) -> None:
        """Run batches in a daemon thread until :meth:`stop`."""
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"projection-{self.namespace}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> ProjectionRunner[P]:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        backoff = self.poll_interval
        while not self._stopping.is_set():
            if self.paused:
                self._stopping.wait(self.poll_interval)
                continue
            try:
                applied = self.outages.attempt(self.run_once, self._stopping)
                if applied is None:
                    continue  # a server was down: waited, and now tries again
            except Exception as e:
                self.last_error = e
                logger.exception(
                    "%s: batch failed; retrying in %.2fs", self.namespace, backoff
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.last_error = None
            backoff = self.poll_interval
            if applied < self.batch_size:
                self._stopping.wait(self.poll_interval)


class ReadModel:
    """Reads a projection's documents: by key through the cache, lists from
    the store. A cache that is down is passed by, not an error."""

    def __init__(
        self, store: ReadModelStore, cache: ReadModelCache | None = None
    ) -> None:
        self.store = store
        self.cache = cache

    def get(
        self, collection: str, key: str, *, min_position: int = 0
    ) -> Document | None:
        """The document, through the cache. A cached entry older than
        ``min_position`` is passed by: the projection commits before it
        updates the cache, so a read that waited for a write may find the
        cache a moment behind the store."""
        cache_key = f"{collection}:{key}"
        if self.cache is not None:
            try:
                hit = self.cache.get(self.store.projection, cache_key)
            except InfrastructureUnavailable:
                hit = None
            if hit is not None and hit.position >= min_position:
                return hit.doc
        stored = self.store.get(collection, key)
        if self.cache is not None:
            doc, position = (
                (None, 0) if stored is None else (stored.doc, stored.position)
            )
            with contextlib.suppress(InfrastructureUnavailable):
                self.cache.put(self.store.projection, cache_key, doc, position)
        return None if stored is None else stored.doc

    def find(
        self,
        collection: str,
        where: dict[str, Any] | None = None,
        *,
        order_by: str | None = None,
        descending: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Document]:
        return self.store.find(
            collection,
            where,
            order_by=order_by,
            descending=descending,
            limit=limit,
            offset=offset,
        )

    def count(self, collection: str, where: dict[str, Any] | None = None) -> int:
        return self.store.count(collection, where)

    def page(
        self,
        collection: str,
        where: dict[str, Any],
        *,
        order_by: str,
        descending: bool = False,
        limit: int,
        offset: int,
    ) -> dict[str, Any]:
        """One page of a list query's answer: ``{collection: documents, "total",
        "limit", "offset"}``."""
        return {
            collection: self.find(
                collection,
                where,
                order_by=order_by,
                descending=descending,
                limit=limit,
                offset=offset,
            ),
            "total": self.count(collection, where),
            "limit": limit,
            "offset": offset,
        }
