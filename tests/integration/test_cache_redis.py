"""The read-model cache contract on the real Redis, and Redis being down."""

from __future__ import annotations

import pytest

from ordersys import InfrastructureUnavailable
from ordersys.cache import ReadModelCache, RedisCache
from ordersys.testing.contracts.cache import ReadModelCacheContract


class TestRedisCache(ReadModelCacheContract):
    def cache(self) -> ReadModelCache:
        return RedisCache("redis://127.0.0.1:6379/0", prefix="ordersys-test", ttl=60)


def test_an_unreachable_redis_is_named_with_its_address() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0")

    with pytest.raises(InfrastructureUnavailable, match=r"Redis .* 127\.0\.0\.1:1/0"):
        cache.get("orders", "o1")
