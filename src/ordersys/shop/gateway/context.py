"""What the gateway's routes share: the backend, Redis, the token issuer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from fastapi import Request
from redis.exceptions import RedisError

from ordersys.shop.gateway.auth import Tokens
from ordersys.shop.gateway.backend import Backend
from ordersys.shop.gateway.batching import Batched
from ordersys.shop.gateway.models import Written
from ordersys.shop.gateway.problems import request_id_of
from ordersys.shop.settings import ShopSettings


@dataclass
class Gateway:
    settings: ShopSettings
    backend: Backend
    redis: aioredis.Redis
    tokens: Tokens
    batched: Batched

    @property
    def prefix(self) -> str:
        return f"{self.settings.cache_prefix}:gateway"


def gateway(request: Request) -> Gateway:
    found: Gateway = request.app.state.gateway
    return found


async def call(request: Request, message_type: str, **body: Any) -> Any:
    """Send ``message_type`` to its service on behalf of ``request``."""
    return await gateway(request).backend.call(
        message_type, request_id_of(request.scope), **body
    )


async def command(request: Request, message_type: str, **body: Any) -> Any:
    """Send the command ``message_type`` to its service on behalf of
    ``request``, together with those of concurrent requests."""
    return await gateway(request).backend.command(
        message_type, request_id_of(request.scope), **body
    )


def written(reply: dict[str, Any]) -> Written:
    """A service's ``Written`` reply as the API shows it."""
    return Written(
        id=reply["aggregate_id"], version=reply["version"], position=reply["position"]
    )


CAUGHT_UP_TRIES = 20
CAUGHT_UP_INTERVAL = 0.005


async def cached(gw: Gateway, key: str, after: int | None = None) -> Any:
    """A read-model document from its cache in Redis (the services' read models
    write each document there with the position of the event behind it): the
    document, or ``None`` if it is not there or older than position ``after``."""
    try:
        raw = await gw.batched.call("GET", key)
    except RedisError:
        return None
    if not isinstance(raw, bytes):
        return None
    position, _, body = raw.partition(b"|")
    if after is not None and int(position) < after:
        return None
    return orjson.loads(body)


async def caught_up(gw: Gateway, key: str, after: int, answer: Any) -> Any:
    """The document at least as recent as position ``after``. ``answer`` is the
    service's, given after its read model applied ``after``; but a service may
    read its cache in the moment between that and the cache's update, so the
    cache is asked again (briefly) for the document of that position."""
    for _ in range(CAUGHT_UP_TRIES):
        doc = await cached(gw, key, after)
        if doc is not None:
            return doc
        await asyncio.sleep(CAUGHT_UP_INTERVAL)
    return answer
