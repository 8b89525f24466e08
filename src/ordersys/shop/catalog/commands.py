"""The catalog's commands (message names of the original design where it had them)."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ordersys import Command, Query


class StockLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: UUID
    quantity: int = Field(gt=0)


class CreateProduct(Command):
    message_type = "product.create"
    sku: str
    name: str
    price_cents: int = Field(gt=0)
    currency: str = "EUR"
    stock: int = Field(0, ge=0)


class ChangePrice(Command):
    message_type = "product.changePrice"
    product_id: UUID
    price_cents: int = Field(gt=0)


class DiscontinueProduct(Command):
    """Take a product off sale: it can no longer be reserved or repriced."""

    message_type = "product.discontinue"
    product_id: UUID


class AddStock(Command):
    message_type = "product.updateInventory"
    product_id: UUID
    quantity: int = Field(gt=0)


class ReserveInventory(Command):
    """Reserve every line for the order, all or nothing."""

    message_type = "product.reserveInventory"
    order_id: UUID
    lines: list[StockLine] = Field(min_length=1)


class ReleaseInventory(Command):
    message_type = "product.releaseInventory"
    order_id: UUID
    product_ids: list[UUID]


class CommitInventory(Command):
    message_type = "product.commitInventory"
    order_id: UUID
    product_ids: list[UUID]


class GetProduct(Query):
    message_type = "product.get"
    product_id: UUID
    after_position: int | None = Field(None, ge=0)


class ListProducts(Query):
    """Products by SKU, a page at a time; discontinued ones only if asked."""

    message_type = "products.getAll"
    include_discontinued: bool = False
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0)
    after_position: int | None = Field(None, ge=0)
