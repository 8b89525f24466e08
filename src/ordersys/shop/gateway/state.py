"""Where the gateway keeps its own state: rate-limit counts, idempotency keys,
the refresh tokens used.

Over the servers it is Redis, shared by every gateway instance. In the
embedded mode (persistence on SQLite or in memory) the only gateway and every
service run in this process, so nothing needs sharing and nothing may connect
to a server: the same Redis commands and Lua scripts are run in memory by
``fakeredis``, and the hot path that reads the services' documents from
Redis (:mod:`ordersys.shop.gateway.fastpath`) is not there, as their cache
is in memory too.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from ordersys.settings import Settings


def in_redis(settings: Settings) -> bool:
    """Whether the gateway's state, and the services' cache, are in Redis."""
    return settings.persistence == "postgres"


def open_state(settings: Settings) -> aioredis.Redis:
    """The Redis client of the gateway's state (one in memory when embedded)."""
    if in_redis(settings):
        return aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=2
        )
    from fakeredis import FakeAsyncRedis

    return FakeAsyncRedis()
