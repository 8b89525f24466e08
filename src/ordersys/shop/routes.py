"""Which service of the shop handles which messages: one table, used by the
gateway (for each request it forwards) and by the order saga (for each command
it sends), so that the two cannot disagree."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ordersys.transport import route

ROUTES: Mapping[str, str] = MappingProxyType(
    {
        "user": "users",
        "product": "catalog",
        "products": "catalog",
        "order": "orders",
        "orders": "orders",
        "payment": "payments",
        "notifications": "notifications",
        "analytics": "analytics",
    }
)
"""The service that handles the messages whose type starts with each word
(``product.reserveInventory``, ``products.list`` → ``catalog``)."""


def service_for(message_type: str) -> str:
    """The service that handles ``message_type``."""
    return route(message_type, ROUTES)
