"""A read-model cache in Redis (the ``[redis]`` extra)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ordersys.cache import Cached, ReadModelCache
from ordersys.errors import InfrastructureUnavailable
from ordersys.extras import needs
from ordersys.settings import address_of

with needs("redis", "RedisCache"):
    import redis

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

    def put_many(
        self, namespace: str, entries: Sequence[tuple[str, bytes | None]], position: int
    ) -> None:
        # One round trip for a batch's documents, not one each.
        pipe = self._client.pipeline(transaction=False)
        for key, text in entries:
            self._put(
                keys=[self._key(namespace, key)],
                args=[position, b"null" if text is None else text, self._ttl],
                client=pipe,
            )
        try:
            pipe.execute()
        except redis.RedisError as e:
            raise self._unavailable(e) from None

    def clear(self, namespace: str) -> None:
        try:
            keys = list(self._client.scan_iter(self._key(namespace, "*"), count=1000))
            for start in range(0, len(keys), 1000):
                self._client.delete(*keys[start : start + 1000])
        except redis.RedisError as e:
            raise self._unavailable(e) from None

    def close(self) -> None:
        self._client.close()
