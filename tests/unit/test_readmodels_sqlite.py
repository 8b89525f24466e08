"""The read-model store contract on SQLite, and a read model that outlives
its process."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventsourcing.persistence import Tracking

from ordersys.readmodels import Change, ReadModelStore, SQLiteReadModelStore
from ordersys.testing.contracts.readmodels import ReadModelStoreContract


class TestSQLiteReadModelStore(ReadModelStoreContract):
    @pytest.fixture(autouse=True)
    def _database_file(self, tmp_path: Path) -> None:
        self.path = str(tmp_path / "readmodels.sqlite")

    def store(self) -> ReadModelStore:
        return SQLiteReadModelStore(self.path, "orders_view")


def test_documents_positions_and_the_live_generation_outlive_the_store(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "readmodels.sqlite")
    before = SQLiteReadModelStore(path, "OrderDetails")
    generation = before.new_generation()
    before.view(generation).apply(
        [Change("orders", "o1", {"status": "CONFIRMED"})], Tracking("Orders", 9)
    )
    before.promote(generation)
    before.close()

    after = SQLiteReadModelStore(path, "OrderDetails")
    stored = after.get("orders", "o1")
    position = after.view(after.live_generation()).max_tracking_id("Orders")
    after.close()

    assert stored is not None
    assert (stored.doc, stored.position, position) == ({"status": "CONFIRMED"}, 9, 9)
