"""Commands run together: one transaction for a batch of commands.

A service that has several commands in hand at once (a broker delivered them
together) runs them in a unit of work: each handler runs as it would alone,
in order, but what it writes (``Application.write``) is kept in memory and
recorded at the end, every command's events in one transaction of their
application. A later command of the batch reads what an earlier one wrote,
from memory, so the batch decides what running them one after another would
have decided, for one commit instead of one each.

The replies wait for that commit. If it fails (another replica changed one
of the aggregates meanwhile, the database went away), nothing of the batch
was written, and :func:`run_together`'s caller runs the commands again one at
a time, each in a transaction of its own, as without a batch: a command is
then carried out twice, which handlers must bear anyway (a broker delivers a
command again after a crash).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from copy import deepcopy
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from eventsourcing.application import ProcessingEvent
from eventsourcing.persistence import Recording

from ordersys.commands import Written

if TYPE_CHECKING:
    from ordersys.aggregates import Aggregate
    from ordersys.application import Application

T = TypeVar("T")


class PendingWrites:
    """What the commands of a batch wrote to one application, not recorded yet."""

    def __init__(self) -> None:
        self.aggregates: dict[UUID, Aggregate] = {}
        """Each aggregate written, as its last writer left it."""
        self.events: list[Any] = []
        self._written: dict[int, tuple[Written, list[Any]]] = {}
        self._positions: dict[int, int] = {}

    def add(self, aggregates: Sequence[Aggregate]) -> Written:
        """Take what ``aggregates`` have to write; the answer's position is
        known once the batch is recorded (see :meth:`resolve`)."""
        events: list[Any] = []
        for aggregate in aggregates:
            events.extend(aggregate.collect_events())
            self.aggregates[aggregate.id] = aggregate
        self.events.extend(events)
        first = aggregates[0]
        written = Written(aggregate_id=first.id, version=first.version, position=None)
        self._written[id(written)] = (written, events)
        return written

    def copy_of(self, aggregate_id: UUID) -> Aggregate | None:
        """A copy of the aggregate as the batch left it (None if the batch
        did not write it): a handler that fails half-way changes nothing."""
        aggregate = self.aggregates.get(aggregate_id)
        return None if aggregate is None else deepcopy(aggregate)

    def processing_event(self) -> ProcessingEvent[UUID]:
        """The batch's events and aggregates, as the library records them."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        processing_event.events.extend(self.events)
        processing_event.aggregates.update(self.aggregates)
        return processing_event

    def recorded(self, recordings: Sequence[Recording[UUID]]) -> None:
        """Note where each event was recorded, for :meth:`resolve`."""
        self._positions = {
            id(r.domain_event): r.notification.id
            for r in recordings
            if r.notification.id is not None
        }

    def resolve(self, value: T) -> T:
        """``value``, or, if it is what :meth:`add` answered, that answer
        with the position of its last event."""
        entry = self._written.get(id(value))
        if entry is None or entry[0] is not value:
            return value
        written, events = entry
        positions = [p for e in events if (p := self._positions.get(id(e))) is not None]
        return dataclasses.replace(  # type: ignore[return-value]
            written, position=max(positions) if positions else None
        )


class Together:
    """The pending writes of a batch in each of its applications."""

    def __init__(self, pending: Sequence[PendingWrites]) -> None:
        self.pending = list(pending)

    def resolve(self, value: T) -> T:
        """``value`` with the position it was recorded at, if it is an
        answer of ``Application.write`` in the batch."""
        for pending in self.pending:
            value = pending.resolve(value)
        return value


@contextmanager
def together(applications: Sequence[Application]) -> Iterator[Together]:
    """Writes to ``applications`` in the block (on this thread) are recorded
    at its end, each application's in one transaction; an exception in the
    block records nothing. Nested, the inner block is part of the outer."""
    with ExitStack() as stack:
        yield Together(
            [stack.enter_context(a.writing_together()) for a in applications]
        )


def run_together(
    applications: Sequence[Application], calls: Sequence[Callable[[], T]]
) -> tuple[list[T], Callable[[Any], Any]] | None:
    """Each of ``calls`` in order, their writes to ``applications`` recorded
    together (see :func:`together`), and how to resolve their answers
    (``Written`` positions); None if the batch could not be recorded: then
    nothing of it was, and the caller runs them again one at a time. The
    calls catch their own errors: one that raises fails the batch."""
    try:
        with together(applications) as batch:
            outcomes = [call() for call in calls]
    except Exception:
        return None
    return outcomes, batch.resolve
