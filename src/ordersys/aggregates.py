"""Aggregates whose events validate their payloads when they are created.

``eventsourcing`` turns each decorated method's signature into an event
dataclass. ordersys adds one thing: when an event is *created* (that is,
while the command runs), every field is checked against its type annotation
with pydantic in strict mode. A payload of the wrong type therefore fails the
command that made it, instead of being stored and failing years later when
the aggregate is replayed. Replay itself does not re-validate (the library
rebuilds stored events without calling ``__init__``), so old events stay
readable while their classes evolve through upcasting.
"""

from __future__ import annotations

import dataclasses
import typing
from copy import deepcopy
from datetime import datetime
from decimal import Decimal
from typing import Any, Self
from uuid import UUID

from eventsourcing.domain import Aggregate as _Aggregate
from eventsourcing.domain import AggregateCreated, event
from pydantic import TypeAdapter, ValidationError

from ordersys import clock
from ordersys.errors import InvalidInput

__all__ = ["Aggregate", "event"]

_new = object.__new__
_LIBRARY_FIELDS = frozenset({"originator_id", "originator_version", "timestamp"})


_ADAPTERS: dict[type[Any], dict[str, TypeAdapter[Any]]] = {}


def _field_adapters(event_class: type[Any]) -> dict[str, TypeAdapter[Any]]:
    adapters = _ADAPTERS.get(event_class)
    if adapters is None:
        adapters = _ADAPTERS[event_class] = _build_adapters(event_class)
    return adapters


def _build_adapters(event_class: type[Any]) -> dict[str, TypeAdapter[Any]]:
    try:
        hints = typing.get_type_hints(event_class)
    except NameError as e:
        msg = (
            f"cannot resolve the annotations of {event_class.__qualname__}: {e}; "
            "event payload types must be importable from the aggregate's module"
        )
        raise TypeError(msg) from e
    return {
        field.name: TypeAdapter(hints[field.name])
        for field in dataclasses.fields(event_class)
        if field.name not in _LIBRARY_FIELDS and field.name in hints
    }


def validate_event_payload(domain_event: Any) -> None:
    """Raise :class:`InvalidInput` naming the dotted path of each bad value
    (``items.0.unit_price``), so a nested error says where it is."""
    problems = [
        problem
        for name, adapter in _field_adapters(type(domain_event)).items()
        for problem in _problems(name, adapter, getattr(domain_event, name))
    ]
    if problems:
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise InvalidInput(
            f"invalid {type(domain_event).__qualname__}: {summary}", fields=problems
        )


def _problems(name: str, adapter: TypeAdapter[Any], value: Any) -> list[dict[str, str]]:
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError as e:
        return [
            {
                "field": ".".join([name, *map(str, error["loc"])]),
                "message": error["msg"],
            }
            for error in e.errors()
        ]
    return []


_SHARED = frozenset({int, str, float, bool, bytes, type(None), UUID, datetime, Decimal})
"""Types whose values a copy of an aggregate may share: they never change."""


class Aggregate(_Aggregate):
    """Base class for ordersys aggregates (plain Python, no infrastructure)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        """``copy.deepcopy``'s copy, sharing the values that never change.

        An application that keeps aggregates in memory hands out a deep copy
        of one for every command; ``deepcopy`` rebuilds each id and timestamp
        through ``__reduce_ex__`` (26 µs for an inventory, 5 µs this way).
        """
        copied = _new(type(self))
        memo[id(self)] = copied
        copied.__dict__.update(
            {
                name: value if type(value) in _SHARED else deepcopy(value, memo)
                for name, value in self.__dict__.items()
            }
        )
        return copied

    class Event(_Aggregate.Event):
        @staticmethod
        def create_timestamp() -> datetime:
            """Now by ordersys' clock (a test's virtual clock, if installed)."""
            return clock.now()

        def __post_init__(self) -> None:
            super().__post_init__()
            validate_event_payload(self)

    class Created(Event, AggregateCreated):
        pass
