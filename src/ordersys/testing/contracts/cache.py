"""The read-model cache contract: memory and Redis behave alike."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod

import pytest

from ordersys.cache import Cached, ReadModelCache


class ReadModelCacheContract(ABC):
    """Subclass as ``Test...``, implementing :meth:`cache`."""

    @abstractmethod
    def cache(self) -> ReadModelCache:
        """A cache; tests use a namespace of their own."""

    @pytest.fixture
    def cache_(self) -> ReadModelCache:
        return self.cache()

    @pytest.fixture
    def ns(self) -> str:
        return f"test-{uuid.uuid4().hex[:8]}"

    def test_a_miss_is_none(self, cache_: ReadModelCache, ns: str) -> None:
        assert cache_.get(ns, "o1") is None

    def test_a_put_is_read_back_with_its_position(
        self, cache_: ReadModelCache, ns: str
    ) -> None:
        assert cache_.put(ns, "o1", {"status": "placed", "lines": [1, 2]}, 4)

        assert cache_.get(ns, "o1") == Cached({"status": "placed", "lines": [1, 2]}, 4)

    def test_an_older_position_never_overwrites_a_newer_one(
        self, cache_: ReadModelCache, ns: str
    ) -> None:
        cache_.put(ns, "o1", {"status": "confirmed"}, 9)

        assert not cache_.put(ns, "o1", {"status": "placed"}, 4)
        assert cache_.put(ns, "o1", {"status": "shipped"}, 12)
        assert cache_.get(ns, "o1") == Cached({"status": "shipped"}, 12)

    def test_a_deletion_is_a_tombstone_that_blocks_older_fills(
        self, cache_: ReadModelCache, ns: str
    ) -> None:
        cache_.put(ns, "o1", None, 10)

        assert not cache_.put(ns, "o1", {"status": "placed"}, 3)
        assert cache_.get(ns, "o1") == Cached(None, 10)

    def test_clear_forgets_only_its_namespace(
        self, cache_: ReadModelCache, ns: str
    ) -> None:
        other = ns + "-other"
        cache_.put(ns, "a", {"n": 1}, 1)
        cache_.put(ns, "b", {"n": 2}, 1)
        cache_.put(other, "a", {"n": 3}, 1)

        cache_.clear(ns)

        assert cache_.get(ns, "a") is None
        assert cache_.get(ns, "b") is None
        assert cache_.get(other, "a") == Cached({"n": 3}, 1)
        cache_.clear(other)

    def test_put_many_writes_a_batch_as_put_does_each(
        self, cache_: ReadModelCache, ns: str
    ) -> None:
        cache_.put(ns, "newer", {"v": "later"}, 9)

        cache_.put_many(
            ns, [("o1", b'{"v":1}'), ("gone", None), ("newer", b'{"v":"old"}')], 5
        )

        assert cache_.get(ns, "o1") == Cached({"v": 1}, 5)
        assert cache_.get(ns, "gone") == Cached(None, 5)
        assert cache_.get(ns, "newer") == Cached({"v": "later"}, 9)
