"""The record-store contract: every adapter (SQLite, PostgreSQL) keeps a
consumer's documents and the messages it applied the same way."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator

import pytest

from ordersys import InvalidInput
from ordersys.readmodels.records import RecordStore


class RecordStoreContract(ABC):
    """Subclass as ``Test...``, implementing :meth:`store`."""

    @abstractmethod
    def store(self) -> RecordStore:
        """A store no other test uses."""

    @pytest.fixture
    def rs(self) -> Iterator[RecordStore]:
        store = self.store()
        yield store
        store.close()

    def test_a_document_written_is_read_back_and_deleted(self, rs: RecordStore) -> None:
        with rs.transaction() as records:
            records.put("orders", "o1", {"status": "placed", "lines": [1, 2]})
        with rs.reading() as records:
            written = records.get("orders", "o1")
        with rs.transaction() as records:
            records.delete("orders", "o1")
        with rs.reading() as records:
            deleted = records.get("orders", "o1")

        assert written == {"status": "placed", "lines": [1, 2]}
        assert deleted is None

    def test_a_transaction_that_raises_writes_nothing(self, rs: RecordStore) -> None:
        def fail_after_writing() -> None:
            with rs.transaction() as records:
                records.first_delivery("analytics", "orders:1")
                records.put("orders", "o1", {"status": "placed"})
                raise LookupError

        with pytest.raises(LookupError):
            fail_after_writing()

        with rs.transaction() as records:
            assert records.get("orders", "o1") is None
            assert records.first_delivery("analytics", "orders:1")

    def test_a_message_is_recorded_once_per_consumer(self, rs: RecordStore) -> None:
        with rs.transaction() as records:
            first = records.first_delivery("analytics", "orders:7")
            again = records.first_delivery("analytics", "orders:7")
            other = records.first_delivery("notifications", "orders:7")
        with rs.reading() as records:
            when = records.processed_at("analytics", ["orders:7", "orders:8"])

        assert (first, again, other) == (True, False, True)
        assert list(when) == ["orders:7"]

    def test_find_filters_orders_and_pages(self, rs: RecordStore) -> None:
        with rs.transaction() as records:
            for key, doc in [
                ("a", {"customer": "ann", "total": 30, "n": 1}),
                ("b", {"customer": "bob", "total": 10, "n": 2}),
                ("c", {"customer": "ann", "total": 20, "n": 3}),
                ("d", {"customer": "ann", "n": 4}),
                ("e", {"customer": "ann", "total": 20, "n": 5}),
            ]:
                records.put("orders", key, doc)
            records.put("users", "a", {"customer": "ann"})
            records.put("orders", "a", {"customer": "ann", "total": 30, "n": 1})

        with rs.reading() as records:
            anns = records.find("orders", {"customer": "ann"}, order_by="total")
            written = records.find("orders")
            newest = records.find("orders", descending=True, limit=2)
            page = records.find("orders", {"customer": "ann"}, limit=2, offset=1)
            counted = records.count("orders", {"customer": "ann"})

        assert [d["n"] for d in anns] == [3, 5, 1, 4]  # ties: first written first
        assert [d["n"] for d in written] == [1, 2, 3, 4, 5]  # rewriting keeps place
        assert [d["n"] for d in newest] == [5, 4]
        assert [d["n"] for d in page] == [3, 4]
        assert counted == 4

    def test_filters_compare_scalars_and_documents_are_json(
        self, rs: RecordStore
    ) -> None:
        with rs.transaction() as records:
            records.put("orders", "a", {"paid": True, "note": None, "n": 1})
            records.put("orders", "b", {"paid": False, "n": 2})
            with pytest.raises(InvalidInput, match="scalars"):
                records.find("orders", {"lines": [1]})
            with pytest.raises(InvalidInput, match="JSON"):
                records.put("orders", "c", {"when": object()})

        with rs.reading() as records:
            assert [d["n"] for d in records.find("orders", {"paid": True})] == [1]
            assert records.count("orders", {"paid": False}) == 1

    def test_concurrent_claims_take_different_documents(self, rs: RecordStore) -> None:
        with rs.transaction() as records:
            for key in ("n1", "n2"):
                records.put("notifications", key, {"key": key, "status": "pending"})
        claimed: dict[str, list[str]] = {}
        first_claimed, second_done = threading.Event(), threading.Event()

        def claim(name: str, hold: bool) -> None:
            with rs.transaction() as records:
                found = records.find("notifications", {"status": "pending"}, limit=1)
                for doc in found:
                    records.put("notifications", doc["key"], {**doc, "status": name})
                claimed[name] = [doc["key"] for doc in found]
                if hold:
                    first_claimed.set()
                    # Over PostgreSQL the second passes the held document by
                    # and finishes; SQLite makes it wait for this commit.
                    second_done.wait(0.5)

        holder = threading.Thread(target=claim, args=("first", True))
        holder.start()
        first_claimed.wait(5)
        claim("second", False)
        second_done.set()
        holder.join(5)

        assert sorted(claimed["first"] + claimed["second"]) == ["n1", "n2"]

    def test_a_batch_of_messages_is_recorded_at_once_and_only_new_ones_count(
        self, rs: RecordStore
    ) -> None:
        # Given a message this consumer applied earlier
        with rs.transaction() as records:
            records.first_delivery("analytics", "orders:2")

        # When a batch holds it, new ones, and one of them twice
        with rs.transaction() as records:
            batch = ["orders:3", "orders:1", "orders:2", "orders:3"]
            new = records.first_deliveries("analytics", batch)
            again = records.first_deliveries("analytics", batch)
            other = records.first_deliveries("notifications", ["orders:2"])
        with rs.reading() as records:
            when = records.processed_at("analytics", ["orders:1", "orders:3"])

        # Then only the new ones are new, once, and each is recorded
        assert new == {"orders:1", "orders:3"}
        assert again == set()
        assert other == {"orders:2"}
        assert sorted(when) == ["orders:1", "orders:3"]

    def test_a_transaction_reads_its_own_writes_and_keeps_only_what_it_writes(
        self, rs: RecordStore
    ) -> None:
        # Given documents written in an earlier transaction
        with rs.transaction() as records:
            for n in (1, 2, 3):
                records.put("orders", f"o{n}", {"n": n, "lines": [n]})

        # When one transaction reads, changes without writing, writes, deletes
        # and writes a deleted one again
        with rs.transaction() as records:
            read = records.get("orders", "o1")
            assert read is not None
            read["lines"].append(99)  # changed, never written
            records.put("orders", "o2", {"n": 20, "lines": []})
            seen = records.get("orders", "o2")
            records.delete("orders", "o1")
            gone = records.get("orders", "o1")
            records.put("orders", "o4", {"n": 4, "lines": []})
            records.delete("orders", "o3")
            records.put("orders", "o3", {"n": 30, "lines": []})
            counted = records.count("orders")
            found = [d["n"] for d in records.find("orders")]

        with rs.reading() as records:
            kept = [d["n"] for d in records.find("orders")]
            unchanged = records.get("orders", "o1")

        # Then it saw its own writes, and the order first written puts a
        # document deleted and written again last
        assert seen == {"n": 20, "lines": []}
        assert gone is None
        assert (counted, found) == (3, [20, 4, 30])
        assert kept == [20, 4, 30]
        assert unchanged is None

    def test_what_a_transaction_read_and_changed_is_not_kept_unless_written(
        self, rs: RecordStore
    ) -> None:
        with rs.transaction() as records:
            records.put("orders", "o1", {"lines": [1]})
        with rs.transaction() as records:
            first = records.get("orders", "o1")
            assert first is not None
            first["lines"].append(2)
            second = records.get("orders", "o1")
        with rs.reading() as records:
            stored = records.get("orders", "o1")

        assert second == stored == {"lines": [1]}
