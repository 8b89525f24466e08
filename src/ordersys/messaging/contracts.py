"""Integration-event contracts: what a consumer relies on in a message.

A contract is a pydantic model named after the event (``message_type``) with the
version it understands (``message_version``). Consumers validate each message
against its contract on receipt; one that does not fit, or that is of a newer
version than the contract, is dead-lettered with the reason instead of
reaching a handler. Contracts ignore fields they do not name, so a producer can
add fields without breaking its consumers; removing or changing one is a new
version.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import ConfigDict

from ordersys.errors import InvalidInput
from ordersys.messages import Message
from ordersys.transport import Envelope

VERSION_HEADER = "message_version"


class IntegrationEvent(Message):
    """Base of integration-event contracts: the fields every relayed event has."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    originator_id: UUID
    originator_version: int
    timestamp: datetime


def check(envelope: Envelope, contract: type[Message]) -> None:
    """Raise :class:`InvalidInput` if ``envelope`` does not fit ``contract``."""
    version = int(envelope.headers.get(VERSION_HEADER, "1") or 1)
    if version > contract.message_version:
        raise InvalidInput(
            f"{envelope.message_type} version {version} is newer than this "
            f"consumer understands ({contract.message_version})"
        )
    contract.parse(envelope.body)
