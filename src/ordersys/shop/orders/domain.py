"""Orders: lines, totals and the status an order moves through.

Money is in integer cents. The total is derived from the lines, never stored on
its own, so it always equals their sum.

A customer fills a PENDING order and submits it; from then on its items are
fixed, and the order saga reserves the stock and takes the payment before it
confirms the order (or cancels it, saying why)::

    PENDING --submit--> SUBMITTED --confirm--> CONFIRMED --ship--> SHIPPED
       |                    |                      |                  |
       +--------------------+----cancel------------+--> CANCELLED   deliver
                                                                      v
                                                                  DELIVERED
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

from ordersys import Aggregate, BusinessRuleViolation, InvalidInput, event
from ordersys.shop.catalog.domain import positive

MAX_LINES = 100


class Status(StrEnum):
    PENDING = "PENDING"
    SUBMITTED = "SUBMITTED"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"


def line(product_id: UUID, quantity: int, unit_price_cents: int) -> dict[str, Any]:
    """One order line, as it is stored in events (JSON-friendly)."""
    return {
        "product_id": str(product_id),
        "quantity": positive(quantity, "quantity"),
        "unit_price_cents": positive(unit_price_cents, "unit_price_cents"),
    }


class Order(Aggregate):
    class OrderPlaced(Aggregate.Created):
        customer_id: UUID
        lines: list[dict[str, Any]]

    class ItemAdded(Aggregate.Event):
        product_id: str
        quantity: int
        unit_price_cents: int

    class ItemRemoved(Aggregate.Event):
        product_id: str

    class OrderSubmitted(Aggregate.Event):
        lines: list[dict[str, Any]]
        total_cents: int

    class OrderConfirmed(Aggregate.Event):
        pass

    class OrderCancelled(Aggregate.Event):
        reason: str

    class OrderShipped(Aggregate.Event):
        pass

    class OrderDelivered(Aggregate.Event):
        pass

    @event(OrderPlaced)
    def __init__(self, customer_id: UUID, lines: list[dict[str, Any]]) -> None:
        self.customer_id = customer_id
        self.lines: dict[str, dict[str, Any]] = {}
        for each in lines:
            self._merge(each["product_id"], each["quantity"], each["unit_price_cents"])
        self.status = Status.PENDING
        self.reason = ""

    @classmethod
    def place(
        cls,
        customer_id: UUID,
        lines: list[dict[str, Any]],
        order_id: UUID | None = None,
    ) -> Order:
        """A new pending order; an order may start empty and get items later.
        With ``order_id`` (one a client derived from its idempotency key, say)
        a second placement of the same order is refused by the event store."""
        products = [each["product_id"] for each in lines]
        if len(set(products)) != len(products):
            raise InvalidInput("a product may appear on one line only", field="lines")
        if len(lines) > MAX_LINES:
            raise InvalidInput(f"at most {MAX_LINES} lines", field="lines")
        if order_id is None:
            return cls(customer_id, lines)
        # The library's own way to create an aggregate with a given id.
        return cls._create(
            cls.OrderPlaced, id=order_id, customer_id=customer_id, lines=lines
        )

    @property
    def total_cents(self) -> int:
        return sum(
            each["quantity"] * each["unit_price_cents"] for each in self.lines.values()
        )

    def _merge(self, product_id: str, quantity: int, unit_price_cents: int) -> None:
        current = self.lines.get(product_id)
        quantity += current["quantity"] if current else 0
        self.lines[product_id] = {
            "product_id": product_id,
            "quantity": quantity,
            "unit_price_cents": unit_price_cents,
        }

    def _require(self, *allowed: Status, action: str) -> None:
        if self.status not in allowed:
            raise BusinessRuleViolation(
                f"cannot {action} an order that is {self.status}",
                status=str(self.status),
            )

    def add_item(self, product_id: UUID, quantity: int, unit_price_cents: int) -> None:
        """Add ``quantity`` of a product; more of a product already on the order
        must be at the same price."""
        self._require(Status.PENDING, action="add items to")
        item = line(product_id, quantity, unit_price_cents)
        current = self.lines.get(item["product_id"])
        if current and current["unit_price_cents"] != unit_price_cents:
            raise BusinessRuleViolation(
                f"product {product_id} is already on the order at another price"
            )
        if not current and len(self.lines) >= MAX_LINES:
            raise BusinessRuleViolation(f"an order has at most {MAX_LINES} lines")
        self._item_added(item["product_id"], quantity, unit_price_cents)

    @event(ItemAdded)
    def _item_added(
        self, product_id: str, quantity: int, unit_price_cents: int
    ) -> None:
        self._merge(product_id, quantity, unit_price_cents)

    def remove_item(self, product_id: UUID) -> None:
        self._require(Status.PENDING, action="remove items from")
        if str(product_id) not in self.lines:
            raise BusinessRuleViolation(f"product {product_id} is not on the order")
        self._item_removed(str(product_id))

    @event(ItemRemoved)
    def _item_removed(self, product_id: str) -> None:
        del self.lines[product_id]

    def submit(self) -> None:
        """Check out: the items are fixed and the order awaits stock and payment."""
        self._require(Status.PENDING, action="submit")
        if not self.lines:
            raise BusinessRuleViolation("cannot submit an order without items")
        self._submitted(list(self.lines.values()), self.total_cents)

    # The event carries the lines and total, for the saga that reacts to it.
    @event(OrderSubmitted)
    def _submitted(self, lines: list[dict[str, Any]], total_cents: int) -> None:  # noqa: ARG002
        self.status = Status.SUBMITTED

    def confirm(self) -> None:
        """Stock is reserved and the payment captured."""
        self._require(Status.SUBMITTED, action="confirm")
        self._confirmed()

    @event(OrderConfirmed)
    def _confirmed(self) -> None:
        self.status = Status.CONFIRMED

    def cancel(self, reason: str) -> None:
        self._require(
            Status.PENDING, Status.SUBMITTED, Status.CONFIRMED, action="cancel"
        )
        if not reason.strip():
            raise InvalidInput("say why the order is cancelled", field="reason")
        self._cancelled(reason.strip())

    @event(OrderCancelled)
    def _cancelled(self, reason: str) -> None:
        self.status = Status.CANCELLED
        self.reason = reason

    def ship(self) -> None:
        self._require(Status.CONFIRMED, action="ship")
        self._shipped()

    @event(OrderShipped)
    def _shipped(self) -> None:
        self.status = Status.SHIPPED

    def deliver(self) -> None:
        self._require(Status.SHIPPED, action="deliver")
        self._delivered()

    @event(OrderDelivered)
    def _delivered(self) -> None:
        self.status = Status.DELIVERED
