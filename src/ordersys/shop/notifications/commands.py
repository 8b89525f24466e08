"""The notifications service's queries."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from ordersys import Query


class ListNotifications(Query):
    """Notifications newest first, of one customer and/or one order."""

    message_type = "notifications.getAll"
    customer_id: UUID | None = None
    order_id: UUID | None = None
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0)
