"""The gateway's HTTP requests about each order, for the order's journey.

Nothing else records them: the services see commands, not requests. The
middleware notes each request under ``/orders`` (or ``/admin/orders``) that
names an order (in its path, or in the ``Location`` of the one that placed
it) in a Redis list per order, after the response is sent, kept a week. The
note is one script, sent with the Redis commands of concurrent requests
(:mod:`ordersys.shop.gateway.batching`) rather than in a round trip of its own.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordersys.shop.gateway.batching import Batched
from ordersys.shop.gateway.context import Gateway
from ordersys.shop.gateway.problems import request_id_of

logger = logging.getLogger("ordersys.shop.gateway.console")

ORDER_PATH = re.compile(r"^(?:/admin)?/orders(?:/([0-9a-fA-F-]{36}))?(?:/|$)")
KEPT_SECONDS = 7 * 24 * 3600
KEPT_REQUESTS = 50

# In a request's state: when the middleware saw it; and that a handler has
# recorded it already (with a write of its own, in the same round trip).
STARTED = "order_request_started"
RECORDED = "order_request_recorded"

# The entry appended, the list trimmed to the last ARGV[2], its expiry renewed.
RECORD = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def key_of(prefix: str, order_id: UUID | str) -> str:
    return f"{prefix}:console:requests:{order_id}"


class OrderRequests:
    """ASGI middleware: records the requests about orders."""

    def __init__(self, app: ASGIApp, redis: Batched, prefix: str) -> None:
        self.app = app
        self.redis = redis
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = (
            ORDER_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        )
        if found is None:
            await self.app(scope, receive, send)
            return
        started = time.time()
        state = scope.setdefault("state", {})
        state[STARTED] = started
        response: dict[str, Any] = {}

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name == b"location":
                        response["location"] = value.decode("latin-1")
            await send(message)

        await self.app(scope, receive, noting)
        order_id = found.group(1) or _placed(response.get("location", ""))
        if order_id and not state.get(RECORDED):
            await self._record(scope, order_id.lower(), response.get("status"))

    async def _record(self, scope: Scope, order_id: str, status: int | None) -> None:
        try:
            await self.redis.script(
                RECORD,
                [key_of(self.prefix, order_id)],
                [entry(scope, status), KEPT_REQUESTS, KEPT_SECONDS],
            )
        except RedisError as e:  # the journey misses a step; the request is fine
            logger.warning("order request not recorded: Redis: %s", e)


def entry(scope: Scope, status: int | None) -> bytes:
    """The note of the request of ``scope`` (under way since :class:`OrderRequests`
    saw it) answered ``status``."""
    started: float = scope["state"][STARTED]
    return orjson.dumps(
        {
            "at": datetime.fromtimestamp(started, UTC).isoformat(),
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "request_id": request_id_of(scope),
            "ms": round((time.time() - started) * 1000, 1),
        }
    )


def _placed(location: str) -> str:
    found = ORDER_PATH.match(location)
    return found.group(1) if found and found.group(1) else ""


async def requests_for(gw: Gateway, order_id: UUID) -> list[dict[str, Any]]:
    """The recorded requests about ``order_id`` as timeline entries."""
    try:
        raw = await gw.redis.lrange(key_of(gw.prefix, order_id), 0, -1)
    except RedisError:
        return []
    entries = []
    for item in raw:
        request = json.loads(item)
        entries.append(
            {
                "at": request["at"],
                "service": "gateway",
                "kind": "http",
                "title": f"HTTP {request['method']} {request['path']} → "
                f"{request['status']} in {request['ms']} ms",
                "detail": {"request_id": request["request_id"]},
                "trace": {},
            }
        )
    return entries
