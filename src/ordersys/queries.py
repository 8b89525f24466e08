"""Queries (the read side) and the query bus."""

from __future__ import annotations

from ordersys.bus import MessageBus
from ordersys.messages import Message


class Query(Message):
    """A request for data; never changes state."""


class QueryBus(MessageBus[Query]):
    """Routes each query to its handler."""

    accepts = Query
