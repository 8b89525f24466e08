"""Given, when, then for aggregates: given its history, when a command
method runs, then these new events, or this error.

::

    invoice = Invoice("ann", Decimal("12.00"))
    given(invoice).when(lambda i: i.pay()).then(Invoice.Paid)
    given(invoice).when(lambda i: i.refund()).then_raises(BusinessRuleViolation)
    when(lambda: Invoice("ann", Decimal(12))).then(Invoice.Issued, customer="ann")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Self, TypeVar

from ordersys.aggregates import Aggregate
from ordersys.testing.payloads import check_payload, check_types, names, payload

A = TypeVar("A", bound=Aggregate)


def given(aggregate: A) -> Given[A]:
    """``aggregate``'s new (uncollected) events as the history of the test."""
    return Given(aggregate.collect_events())


def when(create: Callable[[], A]) -> Outcome[A]:
    """The outcome of creating an aggregate with ``create``."""
    try:
        aggregate = create()
    except Exception as e:
        return Outcome(None, [], e)
    return Outcome(aggregate, aggregate.collect_events(), None)


class Given(Generic[A]):
    """An aggregate's history; each :meth:`when` rebuilds it from its events,
    so the test also shows that the events replay."""

    def __init__(self, history: Sequence[Any]) -> None:
        if not history:
            msg = "given() needs an aggregate with new events (its history)"
            raise ValueError(msg)
        self.history = list(history)

    def aggregate(self) -> A:
        """The aggregate rebuilt from the history."""
        rebuilt: Any = None
        for domain_event in self.history:
            rebuilt = domain_event.mutate(rebuilt)
        return rebuilt  # type: ignore[no-any-return]

    def when(self, command: Callable[[A], object]) -> Outcome[A]:
        """The outcome of ``command`` on the rebuilt aggregate."""
        aggregate = self.aggregate()
        try:
            command(aggregate)
        except Exception as e:
            return Outcome(aggregate, aggregate.collect_events(), e)
        return Outcome(aggregate, aggregate.collect_events(), None)


class Outcome(Generic[A]):
    """What a command did: the new events, or the error it raised."""

    def __init__(
        self, aggregate: A | None, events: Sequence[Any], error: Exception | None
    ) -> None:
        self.aggregate = aggregate
        self.events = list(events)
        self.error = error

    def then(self, *event_types: type[Any], **fields: Any) -> Self:
        """Assert the command succeeded with new events of ``event_types``, in
        order; with ``fields``, of exactly one type, whose payload has them."""
        self._succeeded()
        check_types("events", self.events, event_types)
        if fields:
            if len(event_types) != 1:
                msg = "then(...) checks the fields of exactly one event"
                raise TypeError(msg)
            check_payload(
                event_types[0].__qualname__, payload(self.events[0]), **fields
            )
        return self

    def then_nothing(self) -> Self:
        """Assert the command succeeded and recorded no event."""
        return self.then()

    def then_raises(self, error_type: type[Exception], match: str = "") -> Exception:
        """Assert the command raised ``error_type`` with ``match`` in its
        message and recorded no event; returns the error."""
        if not isinstance(self.error, error_type):
            raise AssertionError(
                f"expected {error_type.__name__}, got "
                f"{self.error!r} with events {names(self.events)}"
            )
        if match not in str(self.error):
            raise AssertionError(f"expected {match!r} in {str(self.error)!r}")
        check_types("no events with the error", self.events, [])
        return self.error

    def _succeeded(self) -> None:
        if self.error is not None:
            raise AssertionError(f"the command raised {self.error!r}") from self.error
