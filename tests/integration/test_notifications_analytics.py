"""The notifications and analytics services' consumers against the real
PostgreSQL: what each event records, at most once, and what the figures say.
(tests/system runs them as processes fed by RabbitMQ.)"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message as Mail
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiosmtpd.controller import Controller

from ordersys.messaging.consumer import EventConsumer
from ordersys.readmodels.records import RecordStore, open_records
from ordersys.settings import Settings
from ordersys.shop.analytics.records import OrderRecords as AnalyticsRecords
from ordersys.shop.analytics.service import handlers as analytics_handlers
from ordersys.shop.notifications.channels import Channel, channels_from
from ordersys.shop.notifications.records import NotificationRecords
from ordersys.shop.notifications.service import Delivery, UnknownOrder
from ordersys.shop.notifications.service import handlers as notification_handlers
from ordersys.shop.settings import load_shop_settings
from ordersys.transport import Envelope

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


class Events:
    """Relayed events as a consumer receives them, numbered like the relay does."""

    def __init__(self) -> None:
        self.position = 0

    def __call__(
        self,
        event_type: str,
        aggregate: UUID,
        version: int,
        at: datetime,
        /,
        **fields: Any,
    ) -> Envelope:
        self.position += 1
        body = {
            "originator_id": str(aggregate),
            "originator_version": version,
            "timestamp": at.isoformat(),
            **fields,
        }
        return Envelope(event_type, body, {"message_id": f"orders:{self.position}"})


def consumer(
    settings: Settings, name: str, handlers: dict[str, Any], store: RecordStore
) -> EventConsumer:
    return EventConsumer(settings, name, handlers, patterns=["orders.*"], store=store)


# Notifications


def notifications_for(
    settings: Settings, channels: list[Channel] | None = None
) -> tuple[EventConsumer, NotificationRecords]:
    records = NotificationRecords(open_records(settings, "notifications"))
    handlers = notification_handlers(records, channels or [])
    return consumer(settings, "notifications", handlers, records.store), records


def test_a_customer_is_told_once_of_each_confirmation_cancellation_and_shipment(
    pg_settings: Settings,
) -> None:
    applied, records = notifications_for(pg_settings)
    event = Events()
    ann, order, other = uuid4(), uuid4(), uuid4()
    line = [{"product_id": str(uuid4()), "quantity": 1, "unit_price_cents": 500}]
    applied.apply(
        event("UserRegistered", ann, 1, T0, email="ann@example.com", name="Ann")
    )
    applied.apply(event("OrderPlaced", order, 1, T0, customer_id=str(ann), lines=line))
    confirmed = event("OrderConfirmed", order, 3, T0)
    applied.apply(confirmed)
    applied.apply(confirmed)  # redelivered
    applied.apply(event("OrderShipped", order, 4, T0))
    applied.apply(event("OrderPlaced", other, 1, T0, customer_id=str(ann), lines=line))
    applied.apply(event("OrderCancelled", other, 2, T0, reason="out of stock"))

    found, total = records.find(customer_id=ann, order_id=None, limit=10, offset=0)

    assert total == 3
    assert [(n["kind"], n["order_id"]) for n in found] == [
        ("order_cancelled", str(other)),
        ("order_shipped", str(order)),
        ("order_confirmed", str(order)),
    ]
    assert "out of stock" in found[0]["body"]
    assert {n["status"] for n in found} == {"recorded"}
    assert {n["email"] for n in found} == {"ann@example.com"}
    assert applied.duplicates == 1


def test_a_notification_for_an_order_never_placed_is_refused(
    pg_settings: Settings,
) -> None:
    applied, records = notifications_for(pg_settings)

    with pytest.raises(UnknownOrder):
        applied.apply(Events()("OrderConfirmed", uuid4(), 3, T0))

    assert records.find(customer_id=None, order_id=None, limit=10, offset=0)[1] == 0


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    status = 204

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Webhook]]]:
    handler = type("Hook", (_Webhook,), {"received": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", handler
    server.shutdown()


class _Mailbox:
    def __init__(self) -> None:
        self.mails: list[Mail] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes

        self.mails.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[tuple[int, _Mailbox]]:
    box = _Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, box
    controller.stop()


def test_notifications_are_posted_to_the_webhook_and_mailed_once(
    pg_settings: Settings,
    webhook: tuple[str, type[_Webhook]],
    mailbox: tuple[int, _Mailbox],
) -> None:
    url, hook = webhook
    port, box = mailbox
    settings = load_shop_settings(
        {
            **pg_settings.model_dump(),
            "notify_webhook_url": url,
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
        }
    )
    channels = channels_from(settings)
    applied, records = notifications_for(settings, channels)
    event = Events()
    ann, order = uuid4(), uuid4()
    applied.apply(
        event("UserRegistered", ann, 1, T0, email="ann@example.com", name="Ann")
    )
    applied.apply(event("OrderPlaced", order, 1, T0, customer_id=str(ann), lines=[]))
    applied.apply(event("OrderConfirmed", order, 3, T0))
    delivery = Delivery(records, channels)

    sent = delivery.run_once()
    again = delivery.run_once()

    assert (sent, again) == (1, 0)
    assert [n["subject"] for n in hook.received] == [f"Order {order} is confirmed"]
    assert [(m["To"], m["Subject"]) for m in box.mails] == [
        ("ann@example.com", f"Order {order} is confirmed")
    ]
    (stored,), _ = records.find(customer_id=ann, order_id=None, limit=1, offset=0)
    assert (stored["status"], stored["error"]) == ("sent", "")


def test_a_failed_delivery_is_recorded_with_the_reason_and_not_repeated(
    pg_settings: Settings, webhook: tuple[str, type[_Webhook]]
) -> None:
    url, hook = webhook
    hook.status = 500
    settings = load_shop_settings(
        {**pg_settings.model_dump(), "notify_webhook_url": url}
    )
    channels = channels_from(settings)
    applied, records = notifications_for(settings, channels)
    event = Events()
    ann, order = uuid4(), uuid4()
    applied.apply(event("OrderPlaced", order, 1, T0, customer_id=str(ann), lines=[]))
    applied.apply(event("OrderCancelled", order, 2, T0, reason="no stock"))
    delivery = Delivery(records, channels)

    assert (delivery.run_once(), delivery.run_once()) == (1, 0)

    (stored,), _ = records.find(customer_id=ann, order_id=None, limit=1, offset=0)
    assert stored["status"] == "failed"
    assert stored["error"].startswith("webhook: HTTP Error 500")
    assert len(hook.received) == 1


# Analytics


@pytest.fixture
def analytics(pg_settings: Settings) -> tuple[EventConsumer, AnalyticsRecords]:
    records = AnalyticsRecords(open_records(pg_settings, "analytics"))
    handlers = analytics_handlers(records)
    return consumer(pg_settings, "analytics", handlers, records.store), records


def lines(*items: tuple[UUID, int, int]) -> list[dict[str, Any]]:
    return [
        {"product_id": str(p), "quantity": q, "unit_price_cents": c}
        for p, q, c in items
    ]


def test_figures_add_up_from_the_orders_events(
    analytics: tuple[EventConsumer, AnalyticsRecords],
) -> None:
    applied, records = analytics
    event = Events()
    book, pen = uuid4(), uuid4()
    day2 = T0 + timedelta(days=1)
    stories = [
        # (lines, total, ends, ended after seconds, on day)
        (lines((book, 2, 1000)), 2000, "OrderConfirmed", 2, T0),
        (lines((book, 1, 1000), (pen, 5, 100)), 1500, "OrderConfirmed", 4, day2),
        (lines((pen, 1, 100)), 100, "OrderCancelled", 6, day2),
        (lines((pen, 9, 100)), 900, None, 0, day2),
    ]
    for order_lines, total, end, seconds, day in stories:
        order = uuid4()
        applied.apply(
            event("OrderPlaced", order, 1, day, customer_id=str(uuid4()), lines=[])
        )
        applied.apply(
            event("OrderSubmitted", order, 2, day, lines=order_lines, total_cents=total)
        )
        if end:
            ended = day + timedelta(seconds=seconds)
            applied.apply(event(end, order, 3, ended, reason="no"))
    applied.apply(
        event("OrderPlaced", uuid4(), 1, day2, customer_id=str(uuid4()), lines=[])
    )

    figures = records.figures(top=10, days=30)

    assert figures["revenue_per_day"] == [
        {"day": "2026-11-21", "revenue_cents": 1500, "orders": 1},
        {"day": "2026-11-20", "revenue_cents": 2000, "orders": 1},
    ]
    assert figures["orders_by_status"] == {
        "CANCELLED": 1,
        "CONFIRMED": 2,
        "PENDING": 1,
        "SUBMITTED": 1,
    }
    assert figures["top_products"] == [
        {"product_id": str(pen), "quantity": 5, "revenue_cents": 500},
        {"product_id": str(book), "quantity": 3, "revenue_cents": 3000},
    ] or figures["top_products"] == [
        {"product_id": str(book), "quantity": 3, "revenue_cents": 3000},
    ]
    conversion = figures["conversion"]
    assert (conversion["placed"], conversion["submitted"]) == (5, 4)
    assert (conversion["confirmed"], conversion["rate"]) == (2, 0.5)
    duration = figures["saga_duration_seconds"]
    assert (duration["orders"], duration["p50"], duration["max"]) == (3, 4.0, 6.0)


def test_a_late_or_repeated_event_never_moves_an_order_back(
    analytics: tuple[EventConsumer, AnalyticsRecords],
) -> None:
    applied, records = analytics
    event = Events()
    order = uuid4()
    placed = event("OrderPlaced", order, 1, T0, customer_id=str(uuid4()), lines=[])
    submitted = event(
        "OrderSubmitted", order, 2, T0, lines=lines((uuid4(), 1, 100)), total_cents=100
    )
    confirmed = event("OrderConfirmed", order, 3, T0 + timedelta(seconds=1))
    applied.apply(placed)
    applied.apply(confirmed)  # overtook the submission
    applied.apply(submitted)
    applied.apply(
        Envelope(submitted.message_type, submitted.body, {"message_id": "again"})
    )

    figures = records.figures(top=10, days=30)

    assert figures["orders_by_status"] == {"CONFIRMED": 1}
    assert figures["revenue_per_day"][0]["revenue_cents"] == 100
    assert figures["saga_duration_seconds"]["max"] == 1.0
