"""The read-model store contract: every adapter (memory, PostgreSQL) keeps
documents, their tracking positions and their generations the same way."""

from __future__ import annotations

from abc import ABC, abstractmethod

import orjson
import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from ordersys import InvalidInput, RequestTimeout
from ordersys.readmodels import Change, Documents, ReadModelStore
from ordersys.readmodels.store import Row

APP = "Shop"


class ReadModelStoreContract(ABC):
    """Subclass as ``Test...``, implementing :meth:`store`."""

    @abstractmethod
    def store(self) -> ReadModelStore:
        """A store for a projection no other test uses."""

    @pytest.fixture
    def rm(self) -> ReadModelStore:
        return self.store()

    def put(self, rm: ReadModelStore, position: int, *changes: Change) -> None:
        rm.view(rm.live_generation()).apply(changes, Tracking(APP, position))

    def test_a_new_store_is_empty_at_generation_one(self, rm: ReadModelStore) -> None:
        assert rm.live_generation() == 1
        assert rm.get("orders", "o1") is None
        assert rm.find("orders") == []
        assert rm.view(1).max_tracking_id(APP) is None

    def test_applied_changes_and_their_position_are_stored_together(
        self, rm: ReadModelStore
    ) -> None:
        self.put(rm, 3, Change("orders", "o1", {"status": "placed", "total": 120}))

        stored = rm.get("orders", "o1")
        assert stored is not None
        assert (stored.doc, stored.position) == ({"status": "placed", "total": 120}, 3)
        assert rm.view(1).max_tracking_id(APP) == 3

    def test_a_position_already_applied_is_refused_and_changes_nothing(
        self, rm: ReadModelStore
    ) -> None:
        self.put(rm, 5, Change("orders", "o1", {"status": "placed"}))

        with pytest.raises(IntegrityError):
            self.put(rm, 5, Change("orders", "o1", {"status": "twice"}))
        with pytest.raises(IntegrityError):
            self.put(rm, 4, Change("orders", "o2", {"status": "older"}))

        stored = rm.get("orders", "o1")
        assert stored is not None
        assert stored.doc == {"status": "placed"}
        assert rm.get("orders", "o2") is None

    def test_a_delete_removes_the_document(self, rm: ReadModelStore) -> None:
        self.put(rm, 1, Change("orders", "o1", {"status": "placed"}))
        self.put(rm, 2, Change("orders", "o1", None))

        assert rm.get("orders", "o1") is None
        assert rm.count("orders") == 0

    def test_find_filters_orders_and_pages(self, rm: ReadModelStore) -> None:
        self.put(
            rm,
            1,
            Change("orders", "a", {"customer": "ann", "total": 30, "n": 1}),
            Change("orders", "b", {"customer": "bob", "total": 10, "n": 2}),
            Change("orders", "c", {"customer": "ann", "total": 20, "n": 3}),
            Change("orders", "d", {"customer": "ann", "n": 4}),
            Change("users", "a", {"customer": "ann"}),
        )

        anns = rm.find("orders", {"customer": "ann"}, order_by="total")
        assert [d["n"] for d in anns] == [3, 1, 4]
        newest = rm.find("orders", order_by="total", descending=True, limit=2)
        assert [d["n"] for d in newest] == [1, 3]
        page_two = rm.find("orders", {"customer": "ann"}, order_by="total", offset=2)
        assert [d["n"] for d in page_two] == [4]
        assert rm.count("orders", {"customer": "ann"}) == 3
        assert rm.count("orders") == 4

    def test_a_document_must_be_json(self, rm: ReadModelStore) -> None:
        docs = Documents(rm.view(rm.live_generation()))

        with pytest.raises(InvalidInput, match="JSON"):
            docs.put("orders", "o1", {"when": object()})

    def test_a_batch_reads_its_own_pending_writes(self, rm: ReadModelStore) -> None:
        self.put(rm, 1, Change("counters", "c", {"n": 1}))
        docs = Documents(rm.view(1))

        current = docs.get("counters", "c")
        assert current == {"n": 1}
        docs.put("counters", "c", {"n": current["n"] + 1})
        again = docs.get("counters", "c")
        assert again == {"n": 2}
        docs.delete("counters", "c")

        assert docs.get("counters", "c") is None
        assert docs.changes == [Change("counters", "c", None)]
        stored = rm.get("counters", "c")
        assert stored is not None
        assert stored.doc == {"n": 1}

    def test_a_new_generation_is_invisible_until_promoted(
        self, rm: ReadModelStore
    ) -> None:
        self.put(rm, 1, Change("orders", "o1", {"v": "old"}))
        generation = rm.new_generation()
        rm.view(generation).apply(
            [Change("orders", "o1", {"v": "new"})], Tracking(APP, 1)
        )

        before = rm.get("orders", "o1")
        rm.promote(generation)
        after = rm.get("orders", "o1")

        assert generation == 2
        assert before is not None
        assert before.doc == {"v": "old"}
        assert after is not None
        assert after.doc == {"v": "new"}
        assert rm.live_generation() == 2

    def test_the_live_generation_cannot_be_dropped_an_old_one_can(
        self, rm: ReadModelStore
    ) -> None:
        rm.promote(rm.new_generation())

        with pytest.raises(ValueError, match="live"):
            rm.drop(2)
        rm.drop(1)

        assert rm.new_generation() == 3

    def test_waiting_for_a_position_returns_once_it_is_applied(
        self, rm: ReadModelStore
    ) -> None:
        self.put(rm, 7, Change("orders", "o1", {}))

        rm.view(1).wait_for(APP, 7, timeout=1)
        with pytest.raises(RequestTimeout, match="position 8"):
            rm.view(1).wait_for(APP, 8, timeout=0.05)

    def test_a_document_read_is_a_copy_until_put_back(self, rm: ReadModelStore) -> None:
        docs = Documents(rm.view(1))
        docs.put("orders", "o1", {"lines": {"a": 1}})

        docs.get("orders", "o1")["lines"]["b"] = 2  # type: ignore[index]
        read = docs.get("orders", "o1")

        assert read == {"lines": {"a": 1}}

    def test_a_batch_applies_only_after_the_position_it_was_read_at(
        self, rm: ReadModelStore
    ) -> None:
        view = rm.view(1)
        view.apply([Change("orders", "o1", {"v": 1})], Tracking(APP, 3), after=0)
        view.apply([Change("orders", "o1", {"v": 2})], Tracking(APP, 5), after=3)

        with pytest.raises(IntegrityError):
            view.apply([Change("orders", "o1", {"v": 3})], Tracking(APP, 9), after=3)
        with pytest.raises(IntegrityError):
            view.apply([Change("orders", "o2", {"v": 1})], Tracking(APP, 9), after=0)

        stored = rm.get("orders", "o1")
        assert stored is not None
        assert (stored.doc, stored.position) == ({"v": 2}, 5)
        assert rm.get("orders", "o2") is None
        assert view.max_tracking_id(APP) == 5

    def test_documents_are_fetched_many_at_once(self, rm: ReadModelStore) -> None:
        self.put(rm, 1, Change("orders", "o1", {"v": 1}), Change("users", "o1", {}))

        found = rm.view(1).get_many([("orders", "o1"), ("orders", "o2")])

        assert set(found) == {("orders", "o1"), ("orders", "o2")}
        assert found[("orders", "o2")] is None
        text = found[("orders", "o1")]
        assert text is not None
        assert orjson.loads(text) == {"v": 1}

    def test_a_rebuild_loads_a_generation_in_bulk_with_its_position(
        self, rm: ReadModelStore
    ) -> None:
        odd = 'tab\t, newline\n, backslash \\, quote ", é, \u2028'
        generation = rm.new_generation()
        rows = [
            Row("orders", f"o{n}", orjson.dumps({"n": n, "odd": odd}), n)
            for n in range(1, 2001)
        ]
        rows.append(Row("odd\tcollection", odd, orjson.dumps({"odd": odd}), 7))

        rm.view(generation).load(rows, Tracking(APP, 2500))
        rm.promote(generation)

        assert rm.count("orders") == 2000
        stored = rm.get("orders", "o1500")
        assert stored is not None
        assert (stored.doc, stored.position) == ({"n": 1500, "odd": odd}, 1500)
        oddity = rm.get("odd\tcollection", odd)
        assert oddity is not None
        assert oddity.doc == {"odd": odd}
        assert rm.find("orders", {"n": 7}) == [{"n": 7, "odd": odd}]
        assert rm.view(generation).max_tracking_id(APP) == 2500
