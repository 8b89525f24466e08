"""A command sender for tests of process managers: it records what a saga
sends and answers with the replies the test scripted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from ordersys.errors import OrdersysError


@dataclass(frozen=True)
class Sent:
    """A command a process runner sent."""

    message_type: str
    payload: dict[str, Any]
    command_id: UUID


class RecordingSender:
    """A :class:`~ordersys.processes.CommandSender` that records each command
    and replies as scripted: :meth:`reply` sets the result for a message type
    (``None`` unless set), :meth:`refuse` the typed error it is refused with."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self._results: dict[str, Any] = {}
        self._errors: dict[str, OrdersysError] = {}

    def reply(self, message_type: str, result: Any) -> None:
        """Answer commands of ``message_type`` with ``result`` from now on."""
        self._errors.pop(message_type, None)
        self._results[message_type] = result

    def refuse(self, message_type: str, error: OrdersysError) -> None:
        """Refuse commands of ``message_type`` with ``error`` from now on."""
        self._results.pop(message_type, None)
        self._errors[message_type] = error

    def send(self, command_type: str, payload: dict[str, Any], command_id: UUID) -> Any:
        self.sent.append(Sent(command_type, payload, command_id))
        error = self._errors.get(command_type)
        if error is not None:
            raise error
        return self._results.get(command_type)
