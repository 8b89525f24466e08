"""The catalog's application and command handlers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from ordersys import (
    Application,
    BusinessRuleViolation,
    CommandBus,
    NotFound,
    QueryBus,
    Written,
)
from ordersys.projections import ProjectionRunner, ReadModel
from ordersys.shop.catalog.commands import (
    AddStock,
    ChangePrice,
    CommitInventory,
    CreateProduct,
    DiscontinueProduct,
    GetProduct,
    ListProducts,
    ReleaseInventory,
    ReserveInventory,
)
from ordersys.shop.catalog.domain import Inventory, Product, inventory_id
from ordersys.shop.catalog.projections import ProductCatalog
from ordersys.shop.faults import crash_point


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

    @bus.handles(ChangePrice)
    def change_price(command: ChangePrice) -> Written:
        product = catalog.get(Product, command.product_id)
        product.change_price(command.price_cents)
        return catalog.write(product)

    @bus.handles(DiscontinueProduct)
    def discontinue(command: DiscontinueProduct) -> Written:
        product = catalog.get(Product, command.product_id)
        product.discontinue()
        return catalog.write(product)

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
            if str(command.order_id) in stock.reservations:
                stocks.append(stock)
                continue  # asked again after a crash: it was reserved then
            product = catalog.get(Product, line.product_id)
            if product.discontinued:
                raise BusinessRuleViolation(
                    f"{product.sku} is discontinued", product_id=str(product.id)
                )
            stock.reserve(command.order_id, line.quantity)
            stocks.append(stock)
        catalog.write(*stocks)
        crash_point(catalog.settings, "catalog.reserved")

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


def register_queries(
    queries: QueryBus, runner: ProjectionRunner[ProductCatalog], read: ReadModel
) -> None:
    """Answer product queries from the ``ProductCatalog`` read model."""

    @queries.handles(GetProduct)
    def get(query: GetProduct) -> dict[str, Any]:
        runner.caught_up(query.after_position)
        product = read.get(
            "products", str(query.product_id), min_position=query.after_position or 0
        )
        if product is None or "sku" not in product:
            raise NotFound(
                f"product {query.product_id} not found",
                product_id=str(query.product_id),
            )
        return product

    @queries.handles(ListProducts)
    def list_products(query: ListProducts) -> dict[str, Any]:
        runner.caught_up(query.after_position)
        where = {} if query.include_discontinued else {"discontinued": False}
        return read.page(
            "products", where, order_by="sku", limit=query.limit, offset=query.offset
        )
