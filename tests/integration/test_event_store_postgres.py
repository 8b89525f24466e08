"""The event-store contract on the real PostgreSQL, for both recorders."""

from __future__ import annotations

import pytest

from ordersys.settings import Settings
from ordersys.testing.contracts.event_store import EventStoreContract


class PostgresContract(EventStoreContract):
    concurrent_writers = 8
    event_store = "ordersys"

    @pytest.fixture(autouse=True)
    def _schema(self, pg_settings: Settings) -> None:
        self._settings = pg_settings.model_copy(
            update={"event_store": self.event_store}
        )

    def settings(self) -> Settings:
        return self._settings


class TestOrdersysRecorder(PostgresContract):
    event_store = "ordersys"


class TestStockRecorder(PostgresContract):
    event_store = "stock"
