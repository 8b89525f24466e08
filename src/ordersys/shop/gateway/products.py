"""Browsing products: open to everyone, no token needed."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query, Request

from ordersys.shop.gateway.context import call
from ordersys.shop.gateway.models import LARGEST, Product, ProductPage
from ordersys.shop.gateway.orders import product
from ordersys.shop.gateway.problems import responses

router = APIRouter(tags=["products"])

AFTER = Query(
    None, ge=1, le=LARGEST, description="Wait (bounded) until this write is visible."
)


@router.get(
    "/products",
    response_model=ProductPage,
    summary="Products on sale, by SKU, a page at a time",
    responses=responses(422, 429),
)
async def list_products(
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0, le=1_000_000),
    after_position: int | None = AFTER,
) -> Any:
    return await call(
        request,
        "products.getAll",
        limit=limit,
        offset=offset,
        after_position=after_position,
    )


@router.get(
    "/products/{product_id}",
    response_model=Product,
    summary="One product, with its price and the stock available",
    responses=responses(404, 422, 429),
)
async def get_product(
    product_id: UUID, request: Request, after_position: int | None = AFTER
) -> Any:
    return await product(request, product_id, after_position)
