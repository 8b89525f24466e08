"""The notifications service: consumes the orders' and users' integration
events, records what each customer is told, and delivers it."""

from __future__ import annotations

import logging
import threading
from typing import Any

from ordersys import QueryBus
from ordersys.messaging.contracts import IntegrationEvent
from ordersys.messaging.inbox import Handler
from ordersys.readmodels.records import Records
from ordersys.shop.contracts import (
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    UserRegistered,
    UserUpdated,
)
from ordersys.shop.notifications.channels import Channel
from ordersys.shop.notifications.commands import ListNotifications
from ordersys.shop.notifications.messages import text_for
from ordersys.shop.notifications.records import NotificationRecords
from ordersys.transport import Envelope

logger = logging.getLogger("ordersys.notifications")

CONSUMED: tuple[type[IntegrationEvent], ...] = (
    OrderPlaced,
    OrderConfirmed,
    OrderCancelled,
    OrderShipped,
    UserRegistered,
    UserUpdated,
)


class UnknownOrder(LookupError):
    """A notification for an order whose placement was never received."""


def handlers(known: NotificationRecords, channels: list[Channel]) -> dict[str, Handler]:
    """The consumer's handler per event type."""
    status = "pending" if channels else "recorded"

    def placed(envelope: Envelope, records: Records) -> None:
        event = OrderPlaced.parse(envelope.body)
        known.remember_order(records, event.originator_id, event.customer_id)

    def registered(envelope: Envelope, records: Records) -> None:
        event = UserRegistered.parse(envelope.body)
        known.remember_customer(
            records, event.originator_id, email=event.email, name=event.name
        )

    def updated(envelope: Envelope, records: Records) -> None:
        event = UserUpdated.parse(envelope.body)
        known.remember_customer(records, event.originator_id, name=event.name)

    def notify(contract: type[IntegrationEvent]) -> Handler:
        def handle(envelope: Envelope, records: Records) -> None:
            event = contract.parse(envelope.body)
            text = text_for(event)
            if text is None:
                return
            customer = known.customer_of(records, event.originator_id)
            if customer is None:
                msg = f"order {event.originator_id} was never placed here"
                raise UnknownOrder(msg)
            known.add(
                records,
                envelope.headers["message_id"],
                customer,
                event.originator_id,
                text,
                status=status,
                at=event.timestamp,
            )

        return handle

    return {
        OrderPlaced.message_type: placed,
        UserRegistered.message_type: registered,
        UserUpdated.message_type: updated,
        **{
            c.message_type: notify(c)
            for c in (OrderConfirmed, OrderCancelled, OrderShipped)
        },
    }


class Delivery:
    """Sends pending notifications through the channels, in a thread."""

    def __init__(
        self,
        records: NotificationRecords,
        channels: list[Channel],
        *,
        batch_size: int = 20,
        poll_interval: float = 0.2,
    ) -> None:
        self.records = records
        self.channels = channels
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Send one batch; how many notifications it held."""
        claimed = self.records.claim(self.batch_size)
        for notification in claimed:
            errors = []
            for channel in self.channels:
                try:
                    channel.deliver(notification)
                except Exception as e:
                    errors.append(f"{channel.name}: {e}")
            error = "; ".join(errors)
            if error:
                logger.warning(
                    "notification %s not delivered: %s",
                    notification["notification_id"],
                    error,
                )
            self.records.finish(notification["notification_id"], error)
        return len(claimed)

    def start(self) -> None:
        if not self.channels:
            return  # notifications are recorded, and that is all
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._loop, name="notification-delivery", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sent = self.run_once()
            except Exception:
                logger.exception("notification delivery failed; retrying")
                sent = 0
            if sent < self.batch_size:
                self._stopping.wait(self.poll_interval)


def register_queries(queries: QueryBus, records: NotificationRecords) -> None:
    @queries.handles(ListNotifications)
    def list_notifications(query: ListNotifications) -> dict[str, Any]:
        found, total = records.find(
            customer_id=query.customer_id,
            order_id=query.order_id,
            limit=query.limit,
            offset=query.offset,
        )
        return {
            "notifications": found,
            "total": total,
            "limit": query.limit,
            "offset": query.offset,
        }
