"""Given/when/then for aggregates: what a command recorded, by event name and
payload (without the library's own fields)."""

from __future__ import annotations

from typing import Any

from ordersys import Aggregate

LIBRARY_FIELDS = {
    "originator_id",
    "originator_version",
    "timestamp",
    "originator_topic",
}


def recorded(aggregate: Aggregate) -> list[tuple[str, dict[str, Any]]]:
    """The events ``aggregate`` has recorded since last asked."""
    return [
        (
            type(e).__name__,
            {k: v for k, v in vars(e).items() if k not in LIBRARY_FIELDS},
        )
        for e in aggregate.collect_events()
    ]


def given(aggregate: Aggregate) -> Aggregate:
    """``aggregate`` with its history taken as given (not under test)."""
    aggregate.collect_events()
    return aggregate
