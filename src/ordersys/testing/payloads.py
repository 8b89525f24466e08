"""What tests compare events by: their type and their payload."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

_METADATA = frozenset(
    {"originator_id", "originator_version", "timestamp", "originator_topic"}
)


def payload(domain_event: Any) -> dict[str, Any]:
    """The fields of ``domain_event`` that its aggregate method was given
    (not its id, version, timestamp or topic)."""
    return {
        field.name: getattr(domain_event, field.name)
        for field in dataclasses.fields(domain_event)
        if field.name not in _METADATA
    }


def names(events: Sequence[Any]) -> list[str]:
    """The qualified class names of ``events``, for messages."""
    return [type(e).__qualname__ for e in events]


def check_types(
    what: str, actual: Sequence[Any], expected: Sequence[type[Any]]
) -> None:
    """Assert that ``actual`` are instances of ``expected``, one each, in order."""
    wanted = [t.__qualname__ for t in expected]
    matches = len(actual) == len(expected) and all(
        isinstance(a, t) for a, t in zip(actual, expected, strict=True)
    )
    if not matches:
        raise AssertionError(f"expected {what} {wanted}, got {names(actual)}")


def check_payload(what: str, actual: Mapping[str, Any], **expected: Any) -> None:
    """Assert that ``actual`` has ``expected``'s values (other fields may differ)."""
    differ = {
        name: actual.get(name, "<missing>")
        for name, value in expected.items()
        if name not in actual or actual[name] != value
    }
    if differ:
        raise AssertionError(
            f"{what}: expected {dict(expected)}, but had {differ} in {dict(actual)}"
        )
