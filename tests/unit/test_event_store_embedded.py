"""The event-store contract in the embedded mode: in memory and on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from ordersys import load_settings
from ordersys.settings import Settings
from ordersys.testing.contracts.event_store import EventStoreContract


class TestInMemory(EventStoreContract):
    def settings(self) -> Settings:
        return load_settings({"persistence": "memory"})


class TestSQLiteFile(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _database_file(self, tmp_path: Path) -> None:
        self.path = tmp_path / "events.sqlite"

    def settings(self) -> Settings:
        return load_settings({"persistence": "sqlite", "sqlite_path": str(self.path)})
