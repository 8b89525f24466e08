"""Projections: read models kept from an application's events.

A projection is plain Python: ``apply(event, docs)`` turns one domain event into
changes of JSON documents. The :class:`ProjectionRunner` feeds it the
application's events in batches; each batch's changes are written in one
transaction with the position of its last event, so after a crash the runner
resumes exactly after the last committed batch: no event is missed or applied
twice. After the commit the changed documents are written through to the
cache, and :class:`ReadModel` reads through the cache to the store.

The runner keeps the documents it last wrote or read in memory, as JSON text.
They stay true because each batch commits only if the tracking position is
still the one the runner last saw (another runner of the projection makes the
commit fail, and the memory is dropped). So a poll that finds no event costs
one query, and a batch fetches the documents it lacks in one query: it is
applied once with them read as absent, and again once they are fetched
(projections are deterministic and free of side effects, so that is safe).
A rebuild keeps every document in memory, as the projection's whole state,
and writes the new generation in bulk at the end.

With the read model in PostgreSQL, a runner's thread applies events only while
it holds the lease ``projection:<name>`` (:mod:`ordersys.leases`), so that of
the replicas of a service one applies and the others wait, claiming the lease
every ``claim_interval`` seconds; one that takes over reads its position and
documents from the store again. The other replicas still answer reads,
waits for a position included: :meth:`ProjectionRunner.wait` reads the
position from the store.

Projections are for state, not side effects: a rebuild replays every event,
so sending mail or publishing from ``apply`` would repeat them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, Generic, TypeVar

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.projection import Projection as _Projection

from ordersys.application import Application
from ordersys.cache import ReadModelCache
from ordersys.errors import InfrastructureUnavailable, InvalidInput
from ordersys.leases import Holding, Leases
from ordersys.milestones import Milestones
from ordersys.outages import Outages
from ordersys.readmodels.store import (
    Change,
    Document,
    Documents,
    Key,
    ReadModelStore,
    ReadModelView,
    Row,
    encode,
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

    def apply_all(self, domain_events: Iterable[Any], docs: Documents) -> None:
        """Apply ``domain_events`` in order to ``docs``."""
        apply = self.apply  # bound once: a singledispatchmethod binds per access
        for domain_event in domain_events:
            apply(domain_event, docs)

    def process_batch(self, batch: Sequence[tuple[Any, Tracking]]) -> list[Change]:
        """Apply ``batch`` and record it with its last position, atomically."""
        docs = Documents(self.view)
        self.apply_all([domain_event for domain_event, _ in batch], docs)
        changes = docs.changes
        self.view.apply(changes, batch[-1][1])
        return changes


def _cache_key(change: Change) -> str:
    return f"{change.collection}:{change.key}"


def _remember(
    memory: dict[Key, bytes | None], pending: dict[Key, bytes | None], limit: int
) -> None:
    """Merge a committed batch into ``memory``, forgetting the documents
    written longest ago beyond ``limit``."""
    for key, text in pending.items():
        memory.pop(key, None)
        memory[key] = text
    excess = len(memory) - limit
    if excess > 0:
        for key in list(islice(memory, excess)):
            del memory[key]


class _RebuildDocuments(Documents):
    """A rebuild's documents: the projection's whole state, in memory, as the
    projection put them. ``get`` hands out the document itself, with no copy:
    nothing else reads it before the rebuild writes them all out, as JSON, at
    the end (a document that is not JSON fails the rebuild then)."""

    def __init__(self) -> None:
        super().__init__()
        self.state: dict[Key, Document | None] = {}
        self.positions: dict[Key, int] = {}
        self.position = 0
        """The position of the page being applied."""

    def get(self, collection: str, key: str) -> Document | None:
        return self.state.get((collection, key))

    def put(self, collection: str, key: str, doc: Mapping[str, Any]) -> None:
        self.state[(collection, key)] = doc if type(doc) is dict else dict(doc)
        self.positions[(collection, key)] = self.position

    def delete(self, collection: str, key: str) -> None:
        self.state[(collection, key)] = None
        self.positions[(collection, key)] = self.position

    @property
    def changes(self) -> list[Change]:
        return [Change(c, k, doc) for (c, k), doc in self.state.items()]

    def rows(self) -> Iterator[Row]:
        """Every document, as JSON, with the position that last changed it:
        encoded as they are written, while the server takes the ones before."""
        positions = self.positions
        for (c, k), doc in self.state.items():
            if doc is not None:
                yield Row(c, k, encode(doc), positions[(c, k)])


class ProjectionRunner(Generic[P]):
    """Runs a projection of ``application``'s events, in a thread or step by step.

    ``run_once()`` applies one batch and is what tests call; ``start()`` runs
    batches in a thread until ``stop()``. Failures are logged and retried with
    backoff, never skipped: a stuck projection shows as a growing :meth:`lag`.
    The thread applies while it holds the projection's lease, claimed with
    ``leases`` (by default, with PostgreSQL, leases of its own).
    """

    claim_interval = 1.0
    """Seconds between two claims of the lease by a runner that does not hold it."""

    documents_kept = 50_000
    """Documents kept in memory between batches (JSON text, most recent)."""

    rebuild_page = 5_000
    """Events a rebuild reads at once."""

    def __init__(
        self,
        projection_class: type[P],
        application: Application,
        *,
        store: ReadModelStore | None = None,
        cache: ReadModelCache | None = None,
        leases: Leases | None = None,
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
        self.rebuilt_position = 0
        """How far the running rebuild has applied the events (in memory)."""
        self._memory: dict[Key, bytes | None] = {}
        self._at: int | None = None
        """The live tracking position ``_memory`` is true at (None: unknown)."""
        self.leases = leases
        self._own_leases = False
        self._holding = Holding(leases, f"projection:{projection_class.name}")
        self._follow_generation = False
        """Set on a takeover: another replica may have rebuilt meanwhile."""

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
            return self._run_batch()

    def catch_up(self) -> None:
        """Apply batches until no event is left."""
        while self.run_once():
            pass

    def _run_batch(self) -> int:
        if self._follow_generation:
            self._go_live()
        app = self.application
        view = self.projection.view
        if self._at is None:
            self._memory.clear()
            self._at = view.max_tracking_id(app.name) or 0
        position = self._at
        notifications = app.recorder.select_notifications(
            start=position, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        last = notifications[-1].id
        try:
            events = [app.mapper.to_domain_event(n) for n in notifications]
            docs = self._apply_with_documents(events)
            changes = docs.changes
            view.apply(changes, Tracking(app.name, last), after=position)
        except IntegrityError:
            # Another runner of this projection applied a batch first.
            logger.info("%s: batch after %s already applied", self.namespace, position)
            self._at = None
            return len(notifications)
        except BaseException:
            self._at = None
            raise
        _remember(self._memory, docs.pending, self.documents_kept)
        self._at = last
        self.milestones.reached(last)
        self._write_through(changes, last)
        return len(notifications)

    def _go_live(self) -> None:
        """Continue on the generation that is live now, from its position."""
        generation = self.store.live_generation()
        if generation != self.generation:
            logger.info("%s: generation %s is live", self.namespace, generation)
            self.generation = generation
            self.projection = self.projection_class(self.store.view(generation))
        self._at = None
        self._follow_generation = False

    def _apply_with_documents(self, events: Sequence[Any]) -> Documents:
        """Apply ``events`` with every document they read, fetching those not
        in memory in one query per pass."""
        view, apply = self.projection.view, self.projection.apply
        while True:
            docs = Documents(known=self._memory)
            for domain_event in events:
                try:
                    apply(domain_event, docs)
                except Exception:
                    # Perhaps for want of a document not fetched yet: carry on
                    # to learn what else the batch lacks; this pass is undone.
                    if not docs.missed:
                        raise
            if not docs.missed:
                return docs
            self._memory.update(view.get_many(docs.missed))

    def _write_through(self, changes: list[Change], position: int) -> None:
        if self.cache is None:
            return
        try:
            if self._cache_dirty:
                # Writes were missed while the cache was down: start afresh.
                self.cache.clear(self.namespace)
                self._cache_dirty = False
            self.cache.put_many(
                self.namespace, [(_cache_key(c), c.json) for c in changes], position
            )
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
        ``progress(position, head)`` hears of each page of events applied.

        The documents stay in memory until every event is applied; then they
        fill the new generation in bulk, with the last position, in one
        transaction."""
        generation = self.store.new_generation()
        fresh = self.projection_class(self.store.view(generation))
        state = _RebuildDocuments()
        self.rebuilding, self.rebuilt_position = fresh, 0
        try:
            while self._rebuild_page(fresh, state, progress):
                pass
            with self._lock:
                while self._rebuild_page(fresh, state, progress):
                    pass
                position = self.rebuilt_position
                tracking = Tracking(self.application.name, position)
                fresh.view.load(state.rows(), tracking)
                self.store.promote(generation)
                old, self.generation, self.projection = (
                    self.generation,
                    generation,
                    fresh,
                )
                self._memory, self._at = {}, position
        finally:
            self.rebuilding = None
        self._clear_cache()
        self.store.drop(old)
        logger.info("%s: generation %s is live", self.namespace, generation)
        return generation

    def _rebuild_page(
        self,
        fresh: P,
        state: _RebuildDocuments,
        progress: Callable[[int, int], None] | None,
    ) -> int:
        app = self.application
        notifications = app.recorder.select_notifications(
            start=self.rebuilt_position,
            limit=self.rebuild_page,
            inclusive_of_start=False,
        )
        if not notifications:
            return 0
        state.position = last = notifications[-1].id
        # Each event mapped as it is applied: a page of live events would
        # be traversed by every garbage collection meanwhile.
        fresh.apply_all(map(app.mapper.to_domain_event, notifications), state)
        self.rebuilt_position = last
        if progress is not None:
            progress(last, app.head_position())
        return len(notifications)

    def _clear_cache(self) -> None:
        if self.cache is None:
            return
        try:
            self.cache.clear(self.namespace)
        except InfrastructureUnavailable as e:
            logger.warning("%s: cache not cleared: %s", self.namespace, e.message)
            self._cache_dirty = True

    def start(self) -> None:
        """Run batches in a daemon thread until :meth:`stop`, while the
        projection's lease is held."""
        self._stopping.clear()
        if self.leases is None and self.application.settings.persistence == "postgres":
            self.leases = Leases(
                self.application.settings, f"projection {self.namespace}"
            )
            self._own_leases = True
            self._holding.leases = self.leases
        self._thread = threading.Thread(
            target=self._loop, name=f"projection-{self.namespace}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._holding.release()
        if self._own_leases and self.leases is not None:
            self.leases.close()

    def __enter__(self) -> ProjectionRunner[P]:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            if not self._holding.claim():
                self._stopping.wait(self.claim_interval)
                continue
            # Another replica may have applied events, or rebuilt, meanwhile.
            with self._lock:
                self._at = None
                self._follow_generation = True
            self._apply_while_held()

    def _apply_while_held(self) -> None:
        backoff = self.poll_interval
        while not self._stopping.is_set():
            if not self._holding.still_held():
                logger.warning("%s: lease lost; claiming it again", self.namespace)
                return
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
