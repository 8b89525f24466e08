"""The hot write: ``POST /orders`` of a plain order placed without FastAPI's
routing, dependency and validation machinery.

It sits in front of the FastAPI application, behind every middleware (request
id, rate limit, bounded body, idempotency, the console's record), so those
apply as to any request. It takes a request only in the common form: a bearer
token that verifies, a JSON body of one to 100 items, each a product id in
canonical form and a quantity in range, ``submit`` a boolean or absent, and
every product in the catalog's cache, not discontinued. Anything else (a miss,
another shape, any doubt) goes on to the route, which answers it in full,
including every refusal; both place the same order and answer the same
``Written``. The price lookup has no effect, so handing a request on after it
is safe; nothing is handed on once ``order.create`` is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any
from uuid import UUID

import orjson
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ordersys.errors import OrdersysError, Unauthenticated
from ordersys.shop.gateway.console import requests
from ordersys.shop.gateway.context import Gateway, cached
from ordersys.shop.gateway.orders import (
    OWNER_SECONDS,
    idempotent_order_id,
    owner_key,
    product_key,
)
from ordersys.shop.gateway.problems import (
    from_error,
    from_unexpected,
    request_id_of,
)

ROUTE = "/orders"
MAX_ITEMS = 100
MAX_QUANTITY = 1000
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_BEARER = re.compile(rb"^Bearer ([^\s]+)$")
_FIELDS = frozenset(("items", "submit"))
_ITEM_FIELDS = frozenset(("product_id", "quantity"))

# The owner key of a new order (KEYS[1]: ARGV[1] for ARGV[2] s) and the
# console's note of the request that placed it (as requests.RECORD does).
OWN_AND_RECORD = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""


def plain_order(body: bytes) -> tuple[list[tuple[str, int]], bool] | None:
    """The (product id, quantity) items and ``submit`` of a body the route
    would accept as it is; None for anything else."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not doc.keys() <= _FIELDS:
        return None
    items, submit = doc.get("items"), doc.get("submit", False)
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        return None
    if not isinstance(submit, bool):
        return None
    plain = []
    for item in items:
        if not isinstance(item, dict) or item.keys() != _ITEM_FIELDS:
            return None
        product_id, quantity = item["product_id"], item["quantity"]
        if not isinstance(product_id, str) or not _UUID.match(product_id):
            return None
        if type(quantity) is not int or not 1 <= quantity <= MAX_QUANTITY:
            return None
        plain.append((product_id, quantity))
    return plain, submit


class PlaceOrders:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == ROUTE
            and not scope["query_string"]
            and await self._placed(scope, receive, send)
        ):
            return
        await self.app(scope, receive, send)

    async def _placed(self, scope: Scope, receive: Receive, send: Send) -> bool:
        state = scope.get("state", {})
        content_type = authorization = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"authorization":
                authorization = value
        bearer = _BEARER.match(authorization)
        order = plain_order(state.get("body", b""))
        if content_type != b"application/json" or bearer is None or order is None:
            return False
        gw = self.gateway
        try:
            user = gw.tokens.principal(bearer.group(1).decode("latin-1"))
        except Unauthenticated:
            return False
        lines = await self._priced(order[0])
        if lines is None:
            return False
        state["route"] = ROUTE
        command: dict[str, Any] = {
            "customer_id": user.subject,
            "lines": lines,
            "submit": order[1],
        }
        order_id = idempotent_order_id(scope)
        if order_id is not None:
            command["order_id"] = str(order_id)
        try:
            reply = await gw.backend.call(
                "order.create", request_id_of(scope), **command
            )
        except OrdersysError as e:
            await from_error(Request(scope), e)(scope, receive, send)
            return True
        except Exception as e:
            await from_unexpected(Request(scope), e)(scope, receive, send)
            return True
        written = {
            "id": str(UUID(str(reply["aggregate_id"]))),
            "version": reply["version"],
            "position": reply["position"],
        }
        owner = f"{user.subject} {written['position'] or ''}"
        with contextlib.suppress(RedisError):
            if requests.STARTED in state:
                # Noted now rather than after the answer: one round trip, not two.
                await gw.batched.script(
                    OWN_AND_RECORD,
                    [
                        owner_key(gw, written["id"]),
                        requests.key_of(gw.prefix, written["id"]),
                    ],
                    [
                        owner,
                        OWNER_SECONDS,
                        requests.entry(scope, 201),
                        requests.KEPT_REQUESTS,
                        requests.KEPT_SECONDS,
                    ],
                )
                state[requests.RECORDED] = True
            else:
                await gw.batched.call(
                    "SET", owner_key(gw, written["id"]), owner, "EX", OWNER_SECONDS
                )
        answer = orjson.dumps(written)
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [
                    (b"content-length", str(len(answer)).encode()),
                    (b"content-type", b"application/json"),
                    (b"location", f"/orders/{written['id']}".encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})
        return True

    async def _priced(
        self, items: list[tuple[str, int]]
    ) -> list[dict[str, Any]] | None:
        """Order lines at the cached prices; None if a product is not cached
        (or not on sale): the route looks it up, or says why not."""
        gw = self.gateway
        keys = [product_key(gw, product_id) for product_id, _ in items]
        docs = (
            [await cached(gw, keys[0])]
            if len(keys) == 1
            else await asyncio.gather(*(cached(gw, key) for key in keys))
        )
        lines = []
        for (product_id, quantity), doc in zip(items, docs, strict=True):
            if (
                not isinstance(doc, dict)
                or doc.get("discontinued")
                or not isinstance(doc.get("price_cents"), int)
            ):
                return None
            lines.append(
                {
                    "product_id": product_id,
                    "quantity": quantity,
                    "unit_price_cents": doc["price_cents"],
                }
            )
        return lines
