"""The record-store contract on SQLite: a file, and a database in memory."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ordersys.readmodels.records import RecordStore
from ordersys.readmodels.records_sqlite import SQLiteRecordStore
from ordersys.testing.contracts.records import RecordStoreContract


class TestSQLiteFile(RecordStoreContract):
    @pytest.fixture(autouse=True)
    def _database_file(self, tmp_path: Path) -> None:
        self.path = tmp_path / "records.sqlite"

    def store(self) -> RecordStore:
        return SQLiteRecordStore(str(self.path), "analytics")


class TestSQLiteInMemory(RecordStoreContract):
    def store(self) -> RecordStore:
        name = uuid.uuid4().hex
        return SQLiteRecordStore(f"file:{name}?mode=memory&cache=shared", "ledger")


def test_records_outlive_the_store_that_wrote_them(tmp_path: Path) -> None:
    path = str(tmp_path / "records.sqlite")
    before = SQLiteRecordStore(path, "analytics")
    with before.transaction() as records:
        records.first_delivery("analytics", "orders:1")
        records.put("orders", "o1", {"status": "CONFIRMED"})
    before.close()

    after = SQLiteRecordStore(path, "analytics")
    with after.transaction() as records:
        kept = records.get("orders", "o1")
        again = records.first_delivery("analytics", "orders:1")
    after.close()

    assert kept == {"status": "CONFIRMED"}
    assert again is False


def test_stores_of_different_names_in_one_file_share_no_documents(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "records.sqlite")
    analytics, notifications = (
        SQLiteRecordStore(path, "analytics"),
        SQLiteRecordStore(path, "notifications"),
    )
    with analytics.transaction() as records:
        records.put("orders", "o1", {"status": "CONFIRMED"})
    with notifications.transaction() as records:
        records.put("orders", "o1", {"customer_id": "c1"})

    with analytics.reading() as records:
        assert records.find("orders") == [{"status": "CONFIRMED"}]
    with notifications.reading() as records:
        assert records.find("orders") == [{"customer_id": "c1"}]
