"""Commands (the write side) and the command bus."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from ordersys.bus import MessageBus
from ordersys.messages import Message


class Command(Message):
    """A request to change state; handled by exactly one handler."""


class CommandBus(MessageBus[Command]):
    """Routes each command to its handler."""

    accepts = Command


@dataclass(frozen=True)
class Written:
    """What a command wrote: the aggregate, its new version, and the position
    of its last event in the application's sequence (``None`` when nothing
    was written). Clients pass ``position`` to a query to read their writes."""

    aggregate_id: UUID
    version: int
    position: int | None
