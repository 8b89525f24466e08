"""Catalog: products, and the inventory of each product.

Inventory is an aggregate of its own (one per product, its id derived from the
product's): every order reserves and releases stock, while product details
change rarely, so keeping them apart means a price change never conflicts with
a reservation, and reservations of different products never conflict at all.
"""

from __future__ import annotations

import re
from uuid import NAMESPACE_URL, UUID, uuid5

from ordersys import Aggregate, BusinessRuleViolation, InvalidInput, event

_SKU = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,31}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def positive(value: int, field: str) -> int:
    if value <= 0:
        raise InvalidInput(f"{field} must be positive, not {value}", field=field)
    return value


class Product(Aggregate):
    class ProductCreated(Aggregate.Created):
        sku: str
        name: str
        price_cents: int
        currency: str

    class PriceChanged(Aggregate.Event):
        price_cents: int

    class ProductDiscontinued(Aggregate.Event):
        pass

    @event(ProductCreated)
    def __init__(self, sku: str, name: str, price_cents: int, currency: str) -> None:
        self.sku = sku
        self.name = name
        self.price_cents = price_cents
        self.currency = currency
        self.discontinued = False

    @classmethod
    def create(
        cls, sku: str, name: str, price_cents: int, currency: str = "EUR"
    ) -> Product:
        if not _SKU.match(sku):
            raise InvalidInput(f"{sku!r} is not a SKU (A-Z, 0-9, -)", field="sku")
        if not name.strip():
            raise InvalidInput("a product needs a name", field="name")
        if not _CURRENCY.match(currency):
            raise InvalidInput(f"{currency!r} is not a currency code", field="currency")
        return cls(sku, name.strip(), positive(price_cents, "price_cents"), currency)

    def change_price(self, price_cents: int) -> None:
        if self.discontinued:
            raise BusinessRuleViolation(f"{self.sku} is discontinued")
        if positive(price_cents, "price_cents") != self.price_cents:
            self._price_changed(price_cents)

    @event(PriceChanged)
    def _price_changed(self, price_cents: int) -> None:
        self.price_cents = price_cents

    def discontinue(self) -> None:
        if self.discontinued:
            raise BusinessRuleViolation(f"{self.sku} is already discontinued")
        self._discontinued()

    @event(ProductDiscontinued)
    def _discontinued(self) -> None:
        self.discontinued = True


class InsufficientStock(BusinessRuleViolation):
    """A reservation that does not fit what is available (its details say how
    much was asked and how much there is)."""

    def __init__(self, product_id: UUID, requested: int, available: int) -> None:
        super().__init__(
            f"only {available} of product {product_id} available, "
            f"{requested} requested",
            product_id=str(product_id),
            requested=requested,
            available=available,
        )


def inventory_id(product_id: UUID) -> UUID:
    return uuid5(NAMESPACE_URL, f"ordersys:inventory:{product_id}")


class Inventory(Aggregate):
    """Stock of one product: on hand, and reserved per order.

    Invariants: ``0 <= reserved <= on_hand``, so ``available`` is never negative.
    Reserving, releasing and committing are idempotent per order, because the
    saga may ask again after a crash.
    """

    class InventoryCreated(Aggregate.Created):
        product_id: UUID

    class StockAdded(Aggregate.Event):
        quantity: int

    class StockReserved(Aggregate.Event):
        order_id: UUID
        quantity: int

    class ReservationReleased(Aggregate.Event):
        order_id: UUID

    class ReservationCommitted(Aggregate.Event):
        order_id: UUID

    @classmethod
    def create_id(cls, product_id: UUID) -> UUID:
        return inventory_id(product_id)

    @event(InventoryCreated)
    def __init__(self, product_id: UUID) -> None:
        self.product_id = product_id
        self.on_hand = 0
        self.reservations: dict[str, int] = {}

    @property
    def reserved(self) -> int:
        return sum(self.reservations.values())

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def add_stock(self, quantity: int) -> None:
        self._stock_added(positive(quantity, "quantity"))

    @event(StockAdded)
    def _stock_added(self, quantity: int) -> None:
        self.on_hand += quantity

    def reserve(self, order_id: UUID, quantity: int) -> None:
        """Reserve ``quantity`` for ``order_id``, or raise :class:`InsufficientStock`.
        Reserving again for the same order changes nothing."""
        positive(quantity, "quantity")
        if str(order_id) in self.reservations:
            return
        if quantity > self.available:
            raise InsufficientStock(self.product_id, quantity, self.available)
        self._reserved(order_id, quantity)

    @event(StockReserved)
    def _reserved(self, order_id: UUID, quantity: int) -> None:
        self.reservations[str(order_id)] = quantity

    def release(self, order_id: UUID) -> None:
        """Give an order's reservation back; nothing if it holds none."""
        if str(order_id) in self.reservations:
            self._released(order_id)

    @event(ReservationReleased)
    def _released(self, order_id: UUID) -> None:
        del self.reservations[str(order_id)]

    def commit(self, order_id: UUID) -> None:
        """The order is confirmed: its reservation leaves the stock for good.
        Nothing if it holds none (it was committed already)."""
        if str(order_id) in self.reservations:
            self._committed(order_id)

    @event(ReservationCommitted)
    def _committed(self, order_id: UUID) -> None:
        self.on_hand -= self.reservations.pop(str(order_id))
