"""The catalog's application and command handlers."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from ordersys import Application, CommandBus
from ordersys.shop.catalog.commands import (
    AddStock,
    CommitInventory,
    CreateProduct,
    ReleaseInventory,
    ReserveInventory,
)
from ordersys.shop.catalog.domain import Inventory, Product, inventory_id


class Catalog(Application):
    aggregate_types = (Product, Inventory)

    def inventory(self, product_id: UUID) -> Inventory:
        return self.get(Inventory, inventory_id(product_id))


def register_handlers(bus: CommandBus, catalog: Catalog) -> None:
    """Route the catalog's commands on ``bus`` to ``catalog``."""

    @bus.handles(CreateProduct)
    def create_product(command: CreateProduct) -> dict[str, str]:
        product = Product.create(
            command.sku, command.name, command.price_cents, command.currency
        )
        stock = Inventory(product_id=product.id)
        if command.stock:
            stock.add_stock(command.stock)
        catalog.write(product, stock)
        return {"product_id": str(product.id)}

    @bus.handles(AddStock)
    def add_stock(command: AddStock) -> int:
        stock = catalog.inventory(command.product_id)
        stock.add_stock(command.quantity)
        catalog.write(stock)
        return stock.available

    @bus.handles(ReserveInventory)
    def reserve(command: ReserveInventory) -> None:
        # All the lines or none: nothing is saved unless every one fits.
        stocks = []
        for line in command.lines:
            stock = catalog.inventory(line.product_id)
            stock.reserve(command.order_id, line.quantity)
            stocks.append(stock)
        catalog.write(*stocks)

    def each_inventory(
        product_ids: list[UUID], change: Callable[[Inventory], None]
    ) -> None:
        stocks = [catalog.inventory(p) for p in product_ids]
        for stock in stocks:
            change(stock)
        catalog.write(*stocks)

    @bus.handles(ReleaseInventory)
    def release(command: ReleaseInventory) -> None:
        each_inventory(command.product_ids, lambda s: s.release(command.order_id))

    @bus.handles(CommitInventory)
    def commit(command: CommitInventory) -> None:
        each_inventory(command.product_ids, lambda s: s.commit(command.order_id))
