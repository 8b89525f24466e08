"""Read-model caches: documents by key, each stored with its position.

A write carries the position of the event that produced the document, and is
ignored when the cache already holds a later one, so a slow reader filling the
cache can never overwrite what the projection wrote after it. A deleted
document is cached as a tombstone for the same reason.

The port lives here; one module per adapter: :mod:`ordersys.cache.memory` (in
this process: tests and the embedded mode) and :mod:`ordersys.cache.redis`
(the ``[redis]`` extra), imported when first used.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from ordersys.cache.memory import MemoryCache
    from ordersys.cache.redis import RedisCache
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

    def put_many(
        self, namespace: str, entries: Sequence[tuple[str, bytes | None]], position: int
    ) -> None:
        """:meth:`put` each ``(key, JSON text)`` (``None``: deleted) at
        ``position``; adapters send them at once."""
        for key, text in entries:
            self.put(
                namespace, key, None if text is None else orjson.loads(text), position
            )

    @abstractmethod
    def clear(self, namespace: str) -> None:
        """Forget every entry of ``namespace``."""


def open_cache(settings: Settings) -> ReadModelCache:
    """Redis on PostgreSQL persistence; a cache in this process in embedded mode."""
    if settings.persistence == "postgres":
        from ordersys.cache.redis import RedisCache

        return RedisCache(
            settings.redis_url, prefix=settings.cache_prefix, ttl=settings.cache_ttl
        )
    from ordersys.cache.memory import MemoryCache

    return MemoryCache(ttl=settings.cache_ttl)


_ADAPTERS = {
    "MemoryCache": "ordersys.cache.memory",
    "RedisCache": "ordersys.cache.redis",
}


def __getattr__(name: str) -> Any:
    # The adapters import this module's port, so they cannot be imported here.
    if name in _ADAPTERS:
        return getattr(importlib.import_module(_ADAPTERS[name]), name)
    raise AttributeError(f"module 'ordersys.cache' has no attribute {name!r}")


__all__ = [
    "Cached",
    "MemoryCache",
    "ReadModelCache",
    "RedisCache",
    "open_cache",
]
