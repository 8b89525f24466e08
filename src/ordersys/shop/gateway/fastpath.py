"""The hot path: ``GET /orders/{id}`` answered from the read-model cache in
one Redis round trip, without FastAPI's routing and dependency machinery.

The orders service's projection keeps every order document in Redis (written
with the position of its event). For a request with a valid access token, this
middleware counts the request against the client's rate limit *and* fetches
the order document in one Lua script (batched with those of concurrent
requests, :mod:`ordersys.shop.gateway.batching`); if the document is there,
recent enough for ``after_position``, and the caller's own, it answers at
once. Anything else (no token, a miss, another customer's order, over the
limit, any other query parameter) goes on to the FastAPI route, which answers
it in full; the count already made is passed on so the request is not counted
twice. The route is also what the OpenAPI document describes: both give the same answer.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from ordersys.shop.gateway.auth import Tokens, client_of
from ordersys.shop.gateway.models import Order
from ordersys.shop.gateway.ratelimit import RateLimits
from ordersys.shop.orders.projections import OrderDetails

_PATH = re.compile(
    r"^/orders/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
# A position as the route takes it (from 1); anything else is the route's to refuse.
_QUERY = re.compile(rb"^(?:after_position=([1-9]\d{0,17}))?$")
_FIELDS = tuple(Order.model_fields)
ROUTE = "/orders/{order_id}"


class CachedOrderReads:
    def __init__(
        self, app: ASGIApp, tokens: Tokens, limits: RateLimits, cache_prefix: str
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.limits = limits
        self.documents = f"{cache_prefix}:{OrderDetails.name}:orders:"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        path = _PATH.match(scope["path"])
        query = _QUERY.match(scope["query_string"]) if path else None
        if (
            path is None
            or query is None
            or not await self._answered(scope, send, path.group(1), query.group(1))
        ):
            await self.app(scope, receive, send)

    async def _answered(
        self, scope: Scope, send: Send, order_id: str, after: bytes | None
    ) -> bool:
        client = client_of(scope, self.tokens)
        principal = scope["state"].get("principal")
        if principal is None:
            return False  # no valid token: the route answers 401
        try:
            count, raw = await self.limits.count(
                scope, time.time(), also_get=self.documents + order_id
            )
        except RedisError:
            return False
        scope["state"]["rate_count"] = count
        remaining = self.limits.per_minute - int(count)
        if remaining < 0 or raw is None or not client:
            return False
        scope["state"]["route"] = ROUTE
        position, _, body = raw.partition(b"|")
        if after is not None and int(position) < int(after):
            return False
        doc: Any = orjson.loads(body)
        if not isinstance(doc, dict) or doc.get("customer_id") != principal.subject:
            return False  # a cached deletion, or another customer's: the route says 404
        lines = doc.get("lines") or {}
        doc["lines"] = list(lines.values()) if isinstance(lines, dict) else lines
        answer = orjson.dumps({field: doc[field] for field in _FIELDS if field in doc})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                    *self.limits.headers(remaining),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})
        return True
