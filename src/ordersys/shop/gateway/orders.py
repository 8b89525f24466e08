"""A customer's orders: place, add and remove items, submit, cancel, read.

Every route here is scoped to the caller: an order of another customer answers
404, exactly like one that does not exist, so ids cannot be probed. Prices come
from the catalog, never from the client.

Reading one order is the hot path: the orders service's read model keeps each
order document in Redis (written by its projection, guarded by position), and
the gateway reads it there directly; only a miss, or a cached document older
than the ``after_position`` asked for, goes to the orders service, which waits
(bounded) for its read model to catch up.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast
from uuid import UUID, uuid5

from fastapi import APIRouter, Depends, Query, Request, Response
from redis.exceptions import RedisError
from starlette.types import Scope

from ordersys.errors import BusinessRuleViolation, InvalidInput, NotFound
from ordersys.shop.catalog.projections import ProductCatalog
from ordersys.shop.gateway.auth import Principal, current_user
from ordersys.shop.gateway.context import (
    Gateway,
    cached,
    call,
    caught_up,
    command,
    gateway,
    written,
)
from ordersys.shop.gateway.models import (
    LARGEST,
    Cancellation,
    Item,
    NewItem,
    NewOrder,
    NotificationPage,
    Order,
    OrderPage,
    Payment,
    Status,
    Submission,
    Written,
)
from ordersys.shop.gateway.problems import responses
from ordersys.shop.orders.commands import CreateOrder
from ordersys.shop.orders.projections import OrderDetails

router = APIRouter(tags=["orders"])

OWNER_SECONDS = 24 * 3600
IDEMPOTENT_ORDERS = UUID("6f0c8a52-3b7e-4f41-9d2a-1c5e7b9a0d34")
"""Namespace of the ids of orders placed with an Idempotency-Key."""
AFTER = Query(
    None, ge=1, le=LARGEST, description="Wait (bounded) until this write is visible."
)
CUSTOMER = Depends(current_user)
WRITE = responses(401, 404, 409, 413, 422, 429, 503, 504)
READ = responses(401, 404, 422, 429, 503, 504)


def order_out(doc: dict[str, Any]) -> dict[str, Any]:
    """The read model's document as the API shows it: lines as a list."""
    lines = doc.get("lines") or {}
    return {**doc, "lines": list(lines.values()) if isinstance(lines, dict) else lines}


def not_found(order_id: UUID | str) -> NotFound:
    return NotFound(f"order {order_id} not found", order_id=str(order_id))


def order_key(gw: Gateway, order_id: UUID | str) -> str:
    return f"{gw.settings.cache_prefix}:{OrderDetails.name}:orders:{order_id}"


async def read_order(
    request: Request, order_id: UUID, after_position: int | None = None
) -> dict[str, Any]:
    """One order document: from the read-model cache if it is there and recent
    enough, else from the orders service (which waits for ``after_position``)."""
    gw = gateway(request)
    key = order_key(gw, order_id)
    doc = await cached(gw, key, after_position)
    if isinstance(doc, dict):
        return doc
    found: dict[str, Any] = await call(
        request, "order.get", order_id=str(order_id), after_position=after_position
    )
    if after_position is not None:
        found = await caught_up(gw, key, after_position, found)
    return found


async def own_order(
    request: Request,
    order_id: UUID,
    user: Principal,
    after_position: int | None = None,
) -> dict[str, Any]:
    """The caller's order, or 404 (also for another customer's). One the
    caller placed a moment ago is read at the position of that write, so that
    the order its Location names is found even before its read model has it."""
    try:
        doc = await read_order(request, order_id, after_position)
    except NotFound:
        placed = await placed_here(gateway(request), order_id)
        if placed is None or placed[0] != user.subject or placed[1] is None:
            raise not_found(order_id) from None
        doc = await read_order(request, order_id, placed[1])
    if doc.get("customer_id") != user.subject:
        raise not_found(order_id)
    return doc


def owner_key(gw: Gateway, order_id: UUID | str) -> str:
    return f"{gw.prefix}:owner:{order_id}"


async def placed_here(gw: Gateway, order_id: UUID) -> tuple[str, int | None] | None:
    """Who placed the order through the gateway, and the position of that
    write; None if the gateway does not remember (or Redis does not answer)."""
    try:
        raw = cast(bytes | None, await gw.batched.call("GET", owner_key(gw, order_id)))
    except RedisError:
        return None
    if raw is None:
        return None
    owner, _, position = raw.decode().partition(" ")
    return owner, int(position) if position.isdigit() else None


async def check_owner(request: Request, order_id: UUID, user: Principal) -> None:
    """404 unless the caller owns the order. The gateway remembers who placed
    the orders it created (the read model may not have them yet)."""
    placed = await placed_here(gateway(request), order_id)
    if placed is None:
        await own_order(request, order_id, user)
    elif placed[0] != user.subject:
        raise not_found(order_id)


def product_key(gw: Gateway, product_id: UUID | str) -> str:
    return f"{gw.settings.cache_prefix}:{ProductCatalog.name}:products:{product_id}"


async def product(
    request: Request, product_id: UUID, after_position: int | None = None
) -> Any:
    """A product's read-model document: from the catalog's cache in Redis if it
    is there (and recent enough), else from the catalog service."""
    gw = gateway(request)
    key = product_key(gw, product_id)
    doc = await cached(gw, key, after_position)
    if isinstance(doc, dict) and "price_cents" in doc:
        return doc
    found = await call(
        request,
        "product.get",
        product_id=str(product_id),
        after_position=after_position,
    )
    if after_position is not None:
        found = await caught_up(gw, key, after_position, found)
    return found


def idempotent_order_id(scope: Scope) -> UUID | None:
    """The id of the order an idempotent request places: derived from its client,
    key and content, so that a retry whose first answer was lost (and so not
    kept by the idempotency middleware) cannot place a second order: the orders
    service refuses to create the same id twice. Used when ``order.create``
    takes an ``order_id``."""
    name = scope.get("state", {}).get("idempotency")
    if not name or "order_id" not in CreateOrder.model_fields:
        return None
    return uuid5(IDEMPOTENT_ORDERS, str(name))


async def priced(
    request: Request, items: list[Item], field: str
) -> list[dict[str, Any]]:
    """Order lines for ``items`` at the catalog's current prices."""
    replies = await asyncio.gather(
        *(product(request, item.product_id) for item in items),
        return_exceptions=True,
    )
    lines = []
    for index, (item, reply) in enumerate(zip(items, replies, strict=True)):
        where = f"{field}.{index}.product_id" if field == "items" else "product_id"
        if isinstance(reply, NotFound):
            message = f"there is no product {item.product_id}"
            raise InvalidInput(message, fields=[{"field": where, "message": message}])
        if isinstance(reply, BaseException):
            raise reply
        if reply.get("discontinued"):
            raise BusinessRuleViolation(
                f"{reply.get('sku', item.product_id)} is discontinued",
                product_id=str(item.product_id),
            )
        lines.append(
            {
                "product_id": str(item.product_id),
                "quantity": item.quantity,
                "unit_price_cents": reply["price_cents"],
            }
        )
    return lines


@router.post(
    "/orders",
    status_code=201,
    response_model=Written,
    summary="Place an order (and submit it at once with submit: true)",
    responses=WRITE,
)
async def place_order(
    body: NewOrder, request: Request, response: Response, user: Principal = CUSTOMER
) -> Any:
    lines = await priced(request, body.items, "items")
    order: dict[str, Any] = {
        "customer_id": user.subject,
        "lines": lines,
        "submit": body.submit,
    }
    order_id = idempotent_order_id(request.scope)
    if order_id is not None:
        # A retry whose first answer was lost gets the first one's (the orders
        # service places nothing twice under one id).
        order["order_id"] = str(order_id)
    result = written(await command(request, "order.create", **order))
    gw = gateway(request)
    # Without it, the read model answers for the order once it has caught up.
    with contextlib.suppress(RedisError):
        await gw.batched.call(
            "SET",
            owner_key(gw, result.id),
            f"{user.subject} {result.position or ''}",
            "EX",
            OWNER_SECONDS,
        )
    response.headers["Location"] = f"/orders/{result.id}"
    return result


@router.get(
    "/orders",
    response_model=OrderPage,
    summary="My orders, newest first, a page at a time",
    responses=READ,
)
async def my_orders(
    request: Request,
    status: Status | None = None,
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0, le=1_000_000),
    after_position: int | None = AFTER,
    user: Principal = CUSTOMER,
) -> Any:
    page = await call(
        request,
        "orders.getAll",
        customer_id=user.subject,
        status=status,
        limit=limit,
        offset=offset,
        after_position=after_position,
    )
    return {**page, "orders": [order_out(o) for o in page["orders"]]}


@router.get(
    "/orders/{order_id}",
    response_model=Order,
    summary="One of my orders",
    responses=READ,
)
async def my_order(
    order_id: UUID,
    request: Request,
    after_position: int | None = AFTER,
    user: Principal = CUSTOMER,
) -> Any:
    return order_out(await own_order(request, order_id, user, after_position))


@router.post(
    "/orders/{order_id}/items",
    response_model=Written,
    summary="Add a product to a pending order (at the catalog's price)",
    responses=WRITE,
)
async def add_item(
    order_id: UUID, body: NewItem, request: Request, user: Principal = CUSTOMER
) -> Any:
    await check_owner(request, order_id, user)
    (line,) = await priced(request, [body], "body")
    reply = await command(
        request,
        "order.addItem",
        order_id=str(order_id),
        expected_version=body.expected_version,
        **line,
    )
    return written(reply)


@router.delete(
    "/orders/{order_id}/items/{product_id}",
    response_model=Written,
    summary="Remove a product from a pending order",
    responses=WRITE,
)
async def remove_item(
    order_id: UUID,
    product_id: UUID,
    request: Request,
    expected_version: int | None = Query(None, ge=1, le=LARGEST),
    user: Principal = CUSTOMER,
) -> Any:
    await check_owner(request, order_id, user)
    reply = await command(
        request,
        "order.removeItem",
        order_id=str(order_id),
        product_id=str(product_id),
        expected_version=expected_version,
    )
    return written(reply)


@router.post(
    "/orders/{order_id}/submit",
    status_code=202,
    response_model=Written,
    summary="Check out (confirm) a pending order: stock and payment follow",
    responses=WRITE,
)
async def submit(
    order_id: UUID,
    request: Request,
    body: Submission | None = None,
    user: Principal = CUSTOMER,
) -> Any:
    await check_owner(request, order_id, user)
    reply = await command(
        request,
        "order.submit",
        order_id=str(order_id),
        expected_version=body.expected_version if body else None,
    )
    return written(reply)


@router.post(
    "/orders/{order_id}/cancel",
    response_model=Written,
    summary="Cancel a pending order",
    responses=WRITE,
)
async def cancel(
    order_id: UUID,
    request: Request,
    body: Cancellation | None = None,
    user: Principal = CUSTOMER,
) -> Any:
    await check_owner(request, order_id, user)
    body = body or Cancellation()
    reply = await command(
        request,
        "order.cancel",
        order_id=str(order_id),
        reason=body.reason,
        expected_version=body.expected_version,
    )
    return written(reply)


@router.get(
    "/orders/{order_id}/payment",
    response_model=Payment,
    summary="The payment of one of my orders",
    description="Status `NONE` until the order saga takes the payment.",
    responses=READ,
)
async def payment(order_id: UUID, request: Request, user: Principal = CUSTOMER) -> Any:
    await check_owner(request, order_id, user)
    try:
        return await call(request, "payment.get", order_id=str(order_id))
    except NotFound:
        # The order is the caller's: its payment is not there yet.
        order = await own_order(request, order_id, user)
        return no_payment(order)


def no_payment(order: dict[str, Any]) -> dict[str, Any]:
    """The payment of an order the order saga has not charged (yet)."""
    return {
        "order_id": order["order_id"],
        "amount_cents": order["total_cents"],
        "status": "NONE",
        "version": 0,
    }


@router.get(
    "/orders/{order_id}/notifications",
    response_model=NotificationPage,
    summary="What I was told about one of my orders",
    responses=READ,
)
async def order_notifications(
    order_id: UUID,
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0, le=1_000_000),
    user: Principal = CUSTOMER,
) -> Any:
    await check_owner(request, order_id, user)
    return await call(
        request,
        "notifications.getAll",
        order_id=str(order_id),
        limit=limit,
        offset=offset,
    )


@router.get(
    "/notifications",
    response_model=NotificationPage,
    summary="What I was told, newest first",
    responses=READ,
)
async def my_notifications(
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0, le=1_000_000),
    user: Principal = CUSTOMER,
) -> Any:
    return await call(
        request,
        "notifications.getAll",
        customer_id=user.subject,
        limit=limit,
        offset=offset,
    )
