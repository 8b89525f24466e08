"""The record-store contract on the real PostgreSQL."""

from __future__ import annotations

import pytest

from ordersys.readmodels.records import RecordStore
from ordersys.readmodels.records_postgres import PostgresRecordStore
from ordersys.settings import Settings
from ordersys.testing.contracts.records import RecordStoreContract


class TestPostgresRecordStore(RecordStoreContract):
    @pytest.fixture(autouse=True)
    def _settings(self, pg_settings: Settings) -> None:
        self.settings = pg_settings

    def store(self) -> RecordStore:
        return PostgresRecordStore(
            self.settings, self.settings.postgres_schema, "analytics"
        )
