"""Commands (the write side) and the command bus.

A command whose handler loses an optimistic-concurrency race (the aggregate
was changed by someone else between its loading and its saving: another
request of this process, or another replica of the service) is run again, a
few times, before its caller is answered with the conflict: the handler loads
the aggregate anew each time, so a retry decides on what is there now.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from ordersys.bus import MessageBus, Middleware, Next
from ordersys.messages import Message

logger = logging.getLogger("ordersys.bus")

CONFLICT_RETRIES = 3
"""Times a command bus runs a handler again after a version conflict."""


class Command(Message):
    """A request to change state; handled by exactly one handler."""


class CommandBus(MessageBus[Command]):
    """Routes each command to its handler, run again (``conflict_retries``
    times at most) when it raises :class:`~ordersys.application.VersionConflict`.
    The retries are the innermost middleware: the others see one dispatch."""

    accepts = Command

    def __init__(
        self,
        middleware: Iterable[Middleware] = (),
        *,
        conflict_retries: int = CONFLICT_RETRIES,
    ) -> None:
        super().__init__([*middleware, retry_conflicts(conflict_retries)])


def retry_conflicts(retries: int = CONFLICT_RETRIES) -> Middleware:
    """Middleware that runs a message's handler again, up to ``retries``
    times, while it raises :class:`~ordersys.application.VersionConflict`;
    the last attempt's conflict is raised. A plain :class:`~ordersys.Conflict`
    (the caller's expected version is stale) is the caller's to resolve and
    is raised at once."""
    # Imported here: the application module imports this one (for Written).
    from ordersys.application import VersionConflict

    def middleware(message: Message, call_next: Next) -> Any:
        for attempt in range(1, retries + 1):
            try:
                return call_next(message)
            except VersionConflict:
                logger.debug(
                    "%s: version conflict, attempt %d of %d",
                    message.message_type,
                    attempt,
                    retries + 1,
                )
        return call_next(message)

    return middleware


@dataclass(frozen=True)
class Written:
    """What a command wrote: the aggregate, its new version, and the position
    of its last event in the application's sequence (``None`` when nothing
    was written). Clients pass ``position`` to a query to read their writes."""

    aggregate_id: UUID
    version: int
    position: int | None
