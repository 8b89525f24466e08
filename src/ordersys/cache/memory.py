"""A read-model cache in this process, with the same semantics as Redis'."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from ordersys.cache import Cached, ReadModelCache


class MemoryCache(ReadModelCache):
    """A cache in this process, with the same semantics as Redis' (for tests and
    the embedded mode)."""

    def __init__(self, ttl: float = 3600.0) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[float, Cached]] = {}

    def get(self, namespace: str, key: str) -> Cached | None:
        with self._lock:
            current = self._current(namespace, key)
        return None if current is None else Cached(_copy(current.doc), current.position)

    def put(
        self, namespace: str, key: str, doc: dict[str, Any] | None, position: int
    ) -> bool:
        with self._lock:
            current = self._current(namespace, key)
            if current is not None and current.position > position:
                return False
            expires = time.monotonic() + self._ttl
            self._entries[(namespace, key)] = (expires, Cached(_copy(doc), position))
            return True

    def _current(self, namespace: str, key: str) -> Cached | None:
        entry = self._entries.get((namespace, key))
        return None if entry is None or entry[0] < time.monotonic() else entry[1]

    def clear(self, namespace: str) -> None:
        with self._lock:
            for entry in [k for k in self._entries if k[0] == namespace]:
                del self._entries[entry]


def _copy(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if doc is None else json.loads(json.dumps(doc))
