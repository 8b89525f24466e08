"""The catalog's application and command handlers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from ordersys import (
    Aggregate,
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

A = TypeVar("A", bound=Aggregate)


class Catalog(Application):
    aggregate_types = (Product, Inventory)
    # Every order reads the inventory of each of its products, whose history
    # grows by two events an order: replaying it each time costs more with
    # every order (42 ms a reserve and commit after 700 orders of two products).
    aggregate_cache_size = 10_000
    # Not trusted as it is (aggregate_cache_trusted): a replica's stale copy
    # could let a commit find no reservation and write nothing, or reserve
    # a product discontinued elsewhere.

    def inventory(self, product_id: UUID) -> Inventory:
        return self.get(Inventory, inventory_id(product_id))

    def inventories(self, product_ids: Sequence[UUID]) -> list[Inventory]:
        """The inventory of each product, in one read."""
        return self.get_many(Inventory, [inventory_id(p) for p in product_ids])

    def stock_lines(
        self, product_ids: Sequence[UUID]
    ) -> list[tuple[Inventory, Product]]:
        """The inventory and the product of each of ``product_ids``, in one read."""
        stock_ids = [inventory_id(p) for p in product_ids]
        try:
            loaded = self.get_many(Aggregate, [*stock_ids, *product_ids])
        except NotFound as e:
            missing = e.details.get("aggregate_id")
            kind = Inventory if missing in {str(i) for i in stock_ids} else Product
            raise NotFound(
                f"{kind.__name__} {missing} not found", aggregate_id=missing
            ) from None
        count = len(stock_ids)
        return [
            (_of(Inventory, stock), _of(Product, product))
            for stock, product in zip(loaded[:count], loaded[count:], strict=True)
        ]


def _of(kind: type[A], aggregate: Aggregate) -> A:
    if not isinstance(aggregate, kind):
        raise NotFound(
            f"{kind.__name__} {aggregate.id} not found", aggregate_id=str(aggregate.id)
        )
    return aggregate


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
        loaded = catalog.stock_lines([line.product_id for line in command.lines])
        for line, (stock, product) in zip(command.lines, loaded, strict=True):
            if str(command.order_id) in stock.reservations:
                stocks.append(stock)
                continue  # asked again after a crash: it was reserved then
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
        stocks = catalog.inventories(product_ids)
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
