"""Redis commands of concurrent requests, sent together.

Each request of the hot path needs one Redis command; sent one by one, the
round trips (a write, a read, a wake-up of the event loop for each) cost more
than the commands. :class:`Batched` gathers the commands issued while the
event loop is busy (:mod:`ordersys.shop.gateway.gathering`) and sends them as
one pipeline, then hands each caller its own reply: the same commands, the
same answers, fewer round trips.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from ordersys.shop.gateway.gathering import Gathering


class Batched:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._gathering: Gathering[tuple[Any, ...]] = Gathering(self._send)
        self._scripts: dict[str, str] = {}

    async def call(self, *command: Any) -> Any:
        """The reply to ``command`` (an exception reply is raised)."""
        return await self._gathering(command)

    async def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """The replies to ``commands``, sent at once on one connection: its
        own write and reads cost less CPU than a pipeline's machinery (whose
        reply callbacks are not applied here: ``SET`` answers b"OK")."""
        pool = self.redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(connection.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as e:  # that command's; read on
                    replies.append(e)
            return replies
        finally:
            await pool.release(connection)

    async def script(self, source: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script by its SHA (loaded on first use, and again after
        Redis forgot it)."""
        sha = self._scripts.get(source)
        if sha is None:
            sha = self._scripts[source] = str(await self.redis.script_load(source))
        try:
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            self._scripts.pop(source, None)
            sha = self._scripts[source] = str(await self.redis.script_load(source))
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
