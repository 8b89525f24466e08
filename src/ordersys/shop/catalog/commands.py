"""The catalog's commands (message names of the original design where it had them)."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ordersys import Command


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
