"""The read-model cache contract in memory."""

from __future__ import annotations

from ordersys.cache import MemoryCache, ReadModelCache
from ordersys.testing.contracts.cache import ReadModelCacheContract


class TestMemoryCache(ReadModelCacheContract):
    def cache(self) -> ReadModelCache:
        return MemoryCache()
