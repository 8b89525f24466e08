"""The notification records: who each order belongs to, the customers'
addresses, and every notification with its delivery status.

A notification is keyed by its event and its customer: that is what makes a
customer hear of an event at most once, whatever the broker redelivers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from ordersys.readmodels.records import Records, RecordStore
from ordersys.shop.notifications.messages import Text

CUSTOMERS = "customers"
ORDERS = "orders"
NOTIFICATIONS = "notifications"


class NotificationRecords:
    """The notifications service's documents in ``store``."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def remember_order(
        self, records: Records, order_id: UUID, customer_id: UUID
    ) -> None:
        if records.get(ORDERS, str(order_id)) is None:
            records.put(ORDERS, str(order_id), {"customer_id": str(customer_id)})

    def remember_customer(
        self,
        records: Records,
        customer_id: UUID,
        *,
        email: str | None = None,
        name: str,
    ) -> None:
        """Keep a customer's address and name; a change of name alone changes
        only the name of a customer known here."""
        customer = records.get(CUSTOMERS, str(customer_id))
        if email is not None:
            records.put(CUSTOMERS, str(customer_id), {"email": email, "name": name})
        elif customer is not None:
            records.put(CUSTOMERS, str(customer_id), {**customer, "name": name})

    def customer_of(self, records: Records, order_id: UUID) -> UUID | None:
        order = records.get(ORDERS, str(order_id))
        return None if order is None else UUID(order["customer_id"])

    def add(
        self,
        records: Records,
        event_id: str,
        customer_id: UUID,
        order_id: UUID,
        text: Text,
        *,
        status: str,
        at: datetime,
    ) -> bool:
        """Record one notification; False if this customer has it already."""
        key = f"{event_id}|{customer_id}"
        if records.get(NOTIFICATIONS, key) is not None:
            return False
        records.put(
            NOTIFICATIONS,
            key,
            {
                "notification_id": key,
                "event_id": event_id,
                "customer_id": str(customer_id),
                "order_id": str(order_id),
                "kind": text.kind,
                "subject": text.subject,
                "body": text.body,
                "status": status,
                "error": "",
                "created_at": at.astimezone(UTC).isoformat(),
                "sent_at": None,
            },
        )
        return True

    def claim(self, limit: int) -> list[dict[str, Any]]:
        """Mark up to ``limit`` pending notifications as being sent, and return
        them. A crash while sending leaves them ``sending``: they are never sent
        twice (at most once), and the operator sees which ones to check."""
        with self.store.transaction() as records:
            claimed = records.find(NOTIFICATIONS, {"status": "pending"}, limit=limit)
            for notification in claimed:
                notification["status"] = "sending"
                records.put(
                    NOTIFICATIONS, notification["notification_id"], notification
                )
            return [self._addressed(records, n) for n in claimed]

    def finish(self, notification_id: str, error: str) -> None:
        with self.store.transaction() as records:
            notification = records.get(NOTIFICATIONS, notification_id)
            if notification is None:
                return
            notification.update(
                status="failed" if error else "sent",
                error=error,
                sent_at=datetime.now(UTC).isoformat(),
            )
            records.put(NOTIFICATIONS, notification_id, notification)

    def find(
        self,
        *,
        customer_id: UUID | None,
        order_id: UUID | None,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """Notifications newest first, and how many match in all."""
        where = {
            field: str(value)
            for field, value in (("customer_id", customer_id), ("order_id", order_id))
            if value is not None
        }
        with self.store.reading() as records:
            found = records.find(
                NOTIFICATIONS, where, descending=True, limit=limit, offset=offset
            )
            total = records.count(NOTIFICATIONS, where)
            return [self._addressed(records, n) for n in found], total

    def _addressed(
        self, records: Records, notification: dict[str, Any]
    ) -> dict[str, Any]:
        """``notification`` with its customer's address, when it is known."""
        customer = records.get(CUSTOMERS, notification["customer_id"]) or {}
        return {**notification, "email": customer.get("email")}
