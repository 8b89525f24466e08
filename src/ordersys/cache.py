"""Read-model caches: documents by key, each stored with its position.

A write carries the position of the event that produced the document, and is
ignored when the cache already holds a later one, so a slow reader filling the
cache can never overwrite what the projection wrote after it. A deleted
document is cached as a tombstone for the same reason.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from ordersys.errors import InfrastructureUnavailable
from ordersys.settings import address_of

if TYPE_CHECKING:
    from ordersys.settings import Settings


@dataclass(frozen=True)
class Cached:
    """A cache hit: the document (``None`` for a cached deletion) and its position."""

    doc: dict[str, Any] | None
    position: int


class ReadModelCache(ABC):
    """Documents of read models by (namespace, key), guarded by position."""

    @abstractmethod
    def get(self, namespace: str, key: str) -> Cached | None:
        """The cached entry, or ``None`` on a miss."""

    @abstractmethod
    def put(
        self, namespace: str, key: str, doc: dict[str, Any] | None, position: int
    ) -> bool:
        """Cache ``doc`` unless a later position is cached; True if written."""

    @abstractmethod
    def clear(self, namespace: str) -> None:
        """Forget every entry of ``namespace``."""


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


# Writes "position|json" unless the key holds a later position. Equal positions
# overwrite: the document for a position is the same whoever writes it.
_PUT_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local position = tonumber(string.match(current, '^(%d+)|'))
  if position and position > tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[3])
return 1
"""


class RedisCache(ReadModelCache):
    """Entries in Redis under ``<prefix>:<namespace>:<key>``, with a TTL."""

    def __init__(self, url: str, *, prefix: str = "ordersys", ttl: int = 3600) -> None:
        self._client: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2
        )
        self._address = address_of(url)
        self._prefix = prefix
        self._ttl = ttl
        self._put = self._client.register_script(_PUT_IF_NEWER)

    def _key(self, namespace: str, key: str) -> str:
        return f"{self._prefix}:{namespace}:{key}"

    def _unavailable(self, error: redis.RedisError) -> InfrastructureUnavailable:
        return InfrastructureUnavailable("Redis", self._address, str(error))

    def get(self, namespace: str, key: str) -> Cached | None:
        try:
            raw = self._client.get(self._key(namespace, key))
        except redis.RedisError as e:
            raise self._unavailable(e) from None
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        position, _, body = text.partition("|")
        return Cached(json.loads(body), int(position))

    def put(
        self, namespace: str, key: str, doc: dict[str, Any] | None, position: int
    ) -> bool:
        try:
            written = self._put(
                keys=[self._key(namespace, key)],
                args=[position, json.dumps(doc), self._ttl],
            )
        except redis.RedisError as e:
            raise self._unavailable(e) from None
        return bool(written)

    def clear(self, namespace: str) -> None:
        try:
            keys = list(self._client.scan_iter(self._key(namespace, "*"), count=1000))
            for start in range(0, len(keys), 1000):
                self._client.delete(*keys[start : start + 1000])
        except redis.RedisError as e:
            raise self._unavailable(e) from None

    def close(self) -> None:
        self._client.close()


def open_cache(settings: Settings) -> ReadModelCache:
    """Redis on PostgreSQL persistence; a cache in this process in embedded mode."""
    if settings.persistence == "postgres":
        return RedisCache(
            settings.redis_url, prefix=settings.cache_prefix, ttl=settings.cache_ttl
        )
    return MemoryCache(ttl=settings.cache_ttl)
