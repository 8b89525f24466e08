"""The read-model store contract on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ordersys.readmodels import PostgresReadModelStore, ReadModelStore
from ordersys.settings import Settings
from ordersys.testing.contracts.readmodels import ReadModelStoreContract


class TestPostgresReadModelStore(ReadModelStoreContract):
    @pytest.fixture(autouse=True)
    def _settings(self, pg_settings: Settings) -> Iterator[None]:
        self.settings = pg_settings
        self.opened: list[ReadModelStore] = []
        yield
        for store in self.opened:
            store.close()

    def store(self) -> ReadModelStore:
        store = PostgresReadModelStore(self.settings, "orders_view")
        self.opened.append(store)
        return store
