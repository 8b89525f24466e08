"""The read-model cache contract in memory."""

from __future__ import annotations

from ordersys.cache import MemoryCache, ReadModelCache
from tests.contracts.cache import ReadModelCacheContract


class TestMemoryCache(ReadModelCacheContract):
    def cache(self) -> ReadModelCache:
        return MemoryCache()
