"""The analytics records: one document per order, kept from the orders'
events, and the figures computed from those documents when asked.

Every timestamp is the event's own, so the figures are the same however late
or often the events are delivered.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

from ordersys.readmodels.records import Records, RecordStore

ORDERS = "orders"


def _instant(value: Any) -> Any:
    """A timestamp as the records keep it (ISO 8601, UTC); other values as given."""
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value


def _day(instant: str) -> str:
    return datetime.fromisoformat(instant).astimezone(UTC).date().isoformat()


def _seconds(start: str, end: str) -> float:
    elapsed = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return elapsed.total_seconds()


def percentile(ordered: list[float], fraction: float) -> float | None:
    """The continuous percentile of sorted values (PostgreSQL's
    ``percentile_cont``: interpolated between the two nearest)."""
    if not ordered:
        return None
    rank = fraction * (len(ordered) - 1)
    below = int(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


class OrderRecords:
    """The analytics service's order documents in ``store``."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def placed(self, records: Records, event: Any, lines: list[dict[str, Any]]) -> None:
        key = str(event.originator_id)
        if records.get(ORDERS, key) is not None:
            return
        records.put(
            ORDERS,
            key,
            {
                "order_id": key,
                "customer_id": str(event.customer_id),
                "status": "PENDING",
                "total_cents": 0,
                "lines": lines,
                "placed_at": _instant(event.timestamp),
                "submitted_at": None,
                "confirmed_at": None,
                "finished_at": None,
                "version": event.originator_version,
            },
        )

    def change(self, records: Records, event: Any, status: str, **columns: Any) -> None:
        """Record what ``event`` tells of its order. Each column but the status
        is set by one kind of event only; the status is taken only from an event
        later than the last one applied, so a redelivered or overtaken event
        cannot move an order back."""
        key = str(event.originator_id)
        order = records.get(ORDERS, key)
        if order is None:
            msg = f"order {event.originator_id} has not been placed here yet"
            raise LookupError(msg)
        if order["version"] < event.originator_version:
            order["status"] = status
            order["version"] = event.originator_version
        order.update({name: _instant(value) for name, value in columns.items()})
        records.put(ORDERS, key, order)

    def figures(self, *, top: int, days: int) -> dict[str, Any]:
        with self.store.reading() as records:
            orders = records.find(ORDERS)
        confirmed = [
            o for o in orders if o["confirmed_at"] and o["status"] != "CANCELLED"
        ]
        submitted = sum(1 for o in orders if o["submitted_at"])
        conversion = {
            "placed": len(orders),
            "submitted": submitted,
            "confirmed": sum(1 for o in orders if o["confirmed_at"]),
            "cancelled": sum(1 for o in orders if o["status"] == "CANCELLED"),
        }
        return {
            "revenue_per_day": _revenue_per_day(confirmed)[:days],
            "orders_by_status": dict(
                sorted(Counter(o["status"] for o in orders).items())
            ),
            "top_products": _top_products(confirmed)[:top],
            "conversion": {
                **conversion,
                "rate": conversion["confirmed"] / submitted if submitted else None,
            },
            "saga_duration_seconds": _durations(orders),
        }


def _revenue_per_day(confirmed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    revenue: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for order in confirmed:
        day = revenue[_day(order["confirmed_at"])]
        day[0] += order["total_cents"]
        day[1] += 1
    return [
        {"day": day, "revenue_cents": cents, "orders": count}
        for day, (cents, count) in sorted(revenue.items(), reverse=True)
    ]


def _top_products(confirmed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sold: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for order in confirmed:
        for line in order["lines"]:
            product = sold[str(line["product_id"])]
            product[0] += int(line["quantity"])
            product[1] += int(line["quantity"]) * int(line["unit_price_cents"])
    ranked = sorted(sold.items(), key=lambda item: (-item[1][0], item[0]))
    return [
        {"product_id": product, "quantity": quantity, "revenue_cents": cents}
        for product, (quantity, cents) in ranked
    ]


def _durations(orders: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = sorted(
        _seconds(o["submitted_at"], o["finished_at"])
        for o in orders
        if o["submitted_at"] and o["finished_at"]
    )
    return {
        "orders": len(seconds),
        "mean": sum(seconds) / len(seconds) if seconds else None,
        "p50": percentile(seconds, 0.5),
        "p95": percentile(seconds, 0.95),
        "max": seconds[-1] if seconds else None,
    }
