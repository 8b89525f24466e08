"""Per-client rate limits, counted in Redis so that every gateway instance
shares them: a fixed window per minute per client (the token's user, else the
IP address). Over the limit answers 429 with ``Retry-After``; every response
says the limit and what is left (``RateLimit-Limit``/``RateLimit-Remaining``).

If Redis is down the gateway lets requests through (and says so in its log and
in ``/health/ready``): refusing every request would turn a cache outage into a
full one.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordersys.shop.gateway.auth import Tokens, client_of
from ordersys.shop.gateway.batching import Batched
from ordersys.shop.gateway.problems import send_problem

logger = logging.getLogger("ordersys.shop.gateway")

EXEMPT = ("/health/", "/docs", "/openapi.json", "/metrics")


# The window's count, created with its expiry; with a second key, also that
# key's value (one round trip for the hot path's count and read). One string,
# "<count>" or "<count>:<value>", so that the reply is cheap to parse.
COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], 61) end
local value = KEYS[2] and redis.call('GET', KEYS[2])
if value then return count .. ':' .. value end
return tostring(count)
"""


class RateLimits:
    """How requests are counted: a key per client and minute."""

    def __init__(
        self, redis: Batched, tokens: Tokens, per_minute: int, prefix: str
    ) -> None:
        self.redis = redis
        self.tokens = tokens
        self.per_minute = per_minute
        self.prefix = f"{prefix}:gateway:rate"
        self._limit = str(per_minute).encode()

    async def count(
        self, scope: Scope, now: float, also_get: str | None = None
    ) -> tuple[int, bytes | None]:
        """Count this request; with ``also_get``, that key's value too."""
        key = f"{self.prefix}:{client_of(scope, self.tokens)}:{int(now // 60)}"
        keys = [key] if also_get is None else [key, also_get]
        reply: bytes = await self.redis.script(COUNT, keys, [])
        count, _, value = reply.partition(b":")
        return int(count), value or None

    def headers(self, remaining: int) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", self._limit),
            (b"ratelimit-remaining", str(remaining).encode()),
        ]


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits
        self.per_minute = limits.per_minute

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT):
            await self.app(scope, receive, send)
            return
        now = time.time()
        state = scope.setdefault("state", {})
        count = state.get("rate_count")  # counted already by the fast path
        if count is None:
            try:
                count, _ = await self.limits.count(scope, now)
            except RedisError as e:
                logger.warning("rate limit not checked: Redis: %s", e)
                await self.app(scope, receive, send)
                return
        remaining = max(self.per_minute - int(count), 0)
        if int(count) > self.per_minute:
            retry = str(max(int(60 - now % 60), 1))
            await send_problem(
                scope,
                send,
                429,
                f"more than {self.per_minute} requests in a minute; retry in {retry}s",
                headers={
                    "Retry-After": retry,
                    "RateLimit-Limit": str(self.per_minute),
                    "RateLimit-Remaining": "0",
                },
            )
            return
        extra = self.limits.headers(remaining)

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_limits)
