"""Admin endpoints, behind the admin role: products and stock, shipping and
delivery, every order, analytics, users, and the dead-letter queues."""

from __future__ import annotations

import contextlib
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from ordersys.errors import NotFound
from ordersys.messaging.consumer import registered_queues
from ordersys.messaging.dlq import DeadLetters
from ordersys.shop.gateway.auth import admin_user
from ordersys.shop.gateway.context import call, command, gateway, written
from ordersys.shop.gateway.models import (
    LARGEST,
    Analytics,
    DeadLetter,
    DeadLetterQueue,
    Moved,
    NewProduct,
    NewUser,
    Order,
    OrderPage,
    PriceChange,
    ProductCreated,
    Profile,
    Status,
    Stock,
    StockAddition,
    Written,
)
from ordersys.shop.gateway.orders import order_out
from ordersys.shop.gateway.problems import responses

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(admin_user)])

SERVICES = ("users", "catalog", "payments", "orders", "notifications", "analytics")
WRITE = responses(401, 403, 404, 409, 413, 422, 429, 503, 504)
READ = responses(401, 403, 404, 422, 429, 503, 504)


@router.post(
    "/users",
    status_code=201,
    response_model=Profile,
    summary="Create a user with a role (customer or admin)",
    responses=WRITE,
)
async def create_user(body: NewUser, request: Request) -> Any:
    reply = await command(
        request,
        "user.create",
        email=body.email,
        name=body.name,
        password=body.password,
        role=body.role,
    )
    return await call(request, "user.get", user_id=reply["aggregate_id"])


@router.post(
    "/products",
    status_code=201,
    response_model=ProductCreated,
    summary="Create a product, with its first stock",
    responses=WRITE,
)
async def create_product(body: NewProduct, request: Request, response: Response) -> Any:
    reply = await command(request, "product.create", **body.model_dump())
    response.headers["Location"] = f"/products/{reply['product_id']}"
    return reply


@router.post(
    "/products/{product_id}/stock",
    response_model=Stock,
    summary="Add stock to a product",
    responses=WRITE,
)
async def add_stock(product_id: UUID, body: StockAddition, request: Request) -> Any:
    available = await command(
        request,
        "product.updateInventory",
        product_id=str(product_id),
        quantity=body.quantity,
    )
    return {"product_id": product_id, "available": available}


@router.post(
    "/products/{product_id}/price",
    response_model=Written,
    summary="Change a product's price (orders placed before keep theirs)",
    responses=WRITE,
)
async def change_price(product_id: UUID, body: PriceChange, request: Request) -> Any:
    reply = await command(
        request,
        "product.changePrice",
        product_id=str(product_id),
        price_cents=body.price_cents,
    )
    return written(reply)


@router.post(
    "/products/{product_id}/discontinue",
    response_model=Written,
    summary="Take a product off sale",
    responses=WRITE,
)
async def discontinue(product_id: UUID, request: Request) -> Any:
    reply = await command(request, "product.discontinue", product_id=str(product_id))
    return written(reply)


@router.get(
    "/orders",
    response_model=OrderPage,
    summary="Every order, newest first, by customer and/or status",
    responses=READ,
)
async def all_orders(
    request: Request,
    customer_id: UUID | None = None,
    status: Status | None = None,
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0, le=1_000_000),
    after_position: int | None = Query(None, ge=1, le=LARGEST),
) -> Any:
    page = await call(
        request,
        "orders.getAll",
        customer_id=str(customer_id) if customer_id else None,
        status=status,
        limit=limit,
        offset=offset,
        after_position=after_position,
    )
    return {**page, "orders": [order_out(o) for o in page["orders"]]}


@router.get(
    "/orders/{order_id}",
    response_model=Order,
    summary="Any order",
    responses=READ,
)
async def any_order(
    order_id: UUID,
    request: Request,
    after_position: int | None = Query(None, ge=1, le=LARGEST),
) -> Any:
    doc = await call(
        request, "order.get", order_id=str(order_id), after_position=after_position
    )
    return order_out(doc)


@router.post(
    "/orders/{order_id}/ship",
    response_model=Written,
    summary="Ship a confirmed order",
    responses=WRITE,
)
async def ship(order_id: UUID, request: Request) -> Any:
    return written(await command(request, "order.ship", order_id=str(order_id)))


@router.post(
    "/orders/{order_id}/deliver",
    response_model=Written,
    summary="Mark a shipped order delivered",
    responses=WRITE,
)
async def deliver(order_id: UUID, request: Request) -> Any:
    return written(await command(request, "order.deliver", order_id=str(order_id)))


@router.get(
    "/analytics",
    response_model=Analytics,
    summary="Revenue per day, orders by status, top products, conversion, "
    "saga durations",
    responses=READ,
)
async def analytics(
    request: Request,
    top: int = Query(10, ge=1, le=100, description="How many top products."),
    days: int = Query(30, ge=1, le=366, description="How many days of revenue."),
) -> Any:
    return await call(request, "analytics.get", top=top, days=days)


def _queues(request: Request) -> list[str]:
    """Every queue that may have dead letters: the services' request queues and
    the registered consumer queues."""
    settings = gateway(request).settings
    prefix = settings.messaging_prefix
    queues = [f"{prefix}.{service}.commands" for service in SERVICES]
    # No registry yet means no consumer queue yet.
    with contextlib.suppress(Exception):
        queues += registered_queues(settings)
    return queues


def _counts(request: Request) -> list[dict[str, Any]]:
    url = gateway(request).settings.rabbitmq_url
    found = []
    for queue in _queues(request):
        try:
            found.append({"queue": queue, "count": DeadLetters(url, queue).count()})
        except NotFound:
            continue  # never declared: nothing was ever dead-lettered there
    return found


def _letters(request: Request, queue: str) -> DeadLetters:
    if queue not in _queues(request):
        raise NotFound(f"there is no queue {queue}", queue=queue)
    return DeadLetters(gateway(request).settings.rabbitmq_url, queue)


@router.get(
    "/dead-letters",
    response_model=list[DeadLetterQueue],
    summary="Dead letters per queue",
    responses=READ,
)
async def dead_letter_queues(request: Request) -> Any:
    return await gateway(request).backend.run(_counts, request)


@router.get(
    "/dead-letters/{queue}",
    response_model=list[DeadLetter],
    summary="The dead letters of a queue, left in place",
    responses=READ,
)
async def dead_letters(
    queue: str, request: Request, limit: int = Query(20, ge=1, le=100)
) -> Any:
    letters = await gateway(request).backend.run(
        lambda: _letters(request, queue).peek(limit)
    )
    return [
        {
            "message_id": letter.message_id,
            "message_type": letter.message_type,
            "reason": letter.reason,
            "body": letter.body[:2000].decode(errors="replace"),
        }
        for letter in letters
    ]


@router.post(
    "/dead-letters/{queue}/replay",
    response_model=Moved,
    summary="Move a queue's dead letters back to it",
    responses=WRITE,
)
async def replay(queue: str, request: Request) -> Any:
    moved = await gateway(request).backend.run(
        lambda: _letters(request, queue).replay()
    )
    return {"queue": queue, "count": moved}


@router.delete(
    "/dead-letters/{queue}",
    response_model=Moved,
    summary="Delete a queue's dead letters",
    responses=WRITE,
)
async def purge(queue: str, request: Request) -> Any:
    purged = await gateway(request).backend.run(
        lambda: _letters(request, queue).purge()
    )
    return {"queue": queue, "count": purged}
