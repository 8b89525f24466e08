"""The read-model store contract in memory."""

from __future__ import annotations

from ordersys.readmodels import MemoryReadModelStore, ReadModelStore
from ordersys.testing.contracts.readmodels import ReadModelStoreContract


class TestMemoryReadModelStore(ReadModelStoreContract):
    def store(self) -> ReadModelStore:
        return MemoryReadModelStore("orders_view")
