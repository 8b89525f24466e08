"""The catalog read model: one document per product, with what is available.

Inventory events name their inventory, not the product, and a release or a
commit does not repeat the quantity reserved; so the projection keeps a
``stock/<inventory id>`` document (the product id and the open reservations)
beside each ``products/<product id>`` document it updates.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import singledispatchmethod
from typing import Any

from ordersys import Documents, Projection
from ordersys.shop.catalog.domain import Inventory, Product

Document = dict[str, Any]


def _blank_product(product_id: str) -> Document:
    return {"product_id": product_id, "on_hand": 0, "reserved": 0, "available": 0}


class ProductCatalog(Projection):
    """``products/<product id>``: SKU, name, price, currency, whether it is
    discontinued, and the stock on hand, reserved and available."""

    name = "product_catalog"

    @singledispatchmethod
    def apply(self, domain_event: Any, docs: Documents) -> None:
        """Other events change nothing."""

    @apply.register
    def _(self, domain_event: Product.ProductCreated, docs: Documents) -> None:
        _change_product(
            docs,
            str(domain_event.originator_id),
            lambda d: d.update(
                sku=domain_event.sku,
                name=domain_event.name,
                price_cents=domain_event.price_cents,
                currency=domain_event.currency,
                discontinued=False,
            ),
        )

    @apply.register
    def _(self, domain_event: Product.PriceChanged, docs: Documents) -> None:
        _change_product(
            docs,
            str(domain_event.originator_id),
            lambda d: d.update(price_cents=domain_event.price_cents),
        )

    @apply.register
    def _(self, domain_event: Product.ProductDiscontinued, docs: Documents) -> None:
        _change_product(
            docs, str(domain_event.originator_id), lambda d: d.update(discontinued=True)
        )

    @apply.register
    def _(self, domain_event: Inventory.InventoryCreated, docs: Documents) -> None:
        docs.put(
            "stock",
            str(domain_event.originator_id),
            {"product_id": str(domain_event.product_id), "reservations": {}},
        )

    @apply.register
    def _(self, domain_event: Inventory.StockAdded, docs: Documents) -> None:
        _change_stock(docs, domain_event, on_hand=domain_event.quantity)

    @apply.register
    def _(self, domain_event: Inventory.StockReserved, docs: Documents) -> None:
        _change_stock(
            docs,
            domain_event,
            reserve=(str(domain_event.order_id), domain_event.quantity),
        )

    @apply.register
    def _(self, domain_event: Inventory.ReservationReleased, docs: Documents) -> None:
        _change_stock(docs, domain_event, end=str(domain_event.order_id))

    @apply.register
    def _(self, domain_event: Inventory.ReservationCommitted, docs: Documents) -> None:
        _change_stock(docs, domain_event, end=str(domain_event.order_id), commit=True)


def _change_product(
    docs: Documents, product_id: str, change: Callable[[Document], None]
) -> None:
    doc = docs.get("products", product_id) or _blank_product(product_id)
    change(doc)
    docs.put("products", product_id, doc)


def _change_stock(
    docs: Documents,
    domain_event: Any,
    *,
    on_hand: int = 0,
    reserve: tuple[str, int] | None = None,
    end: str | None = None,
    commit: bool = False,
) -> None:
    """Apply one inventory event to its stock document and copy the figures
    to the product's document."""
    key = str(domain_event.originator_id)
    stock = docs.get("stock", key)
    if stock is None:
        return  # created before this read model existed and not replayed yet
    reservations: dict[str, int] = stock["reservations"]
    if reserve is not None:
        reservations[reserve[0]] = reserve[1]
    ended = reservations.pop(end, 0) if end is not None else 0
    delta = on_hand - (ended if commit else 0)
    docs.put("stock", key, stock)

    def figures(doc: Document) -> None:
        doc["on_hand"] += delta
        doc["reserved"] = sum(reservations.values())
        doc["available"] = doc["on_hand"] - doc["reserved"]

    _change_product(docs, stock["product_id"], figures)
