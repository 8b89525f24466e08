"""Redis commands of concurrent requests, sent together.

Each request of the hot path needs one Redis command; sent one by one, the
round trips (a write, a read, a wake-up of the event loop for each) cost more
than the commands. :class:`Batched` collects the commands issued while the
event loop is busy and sends them as one pipeline, then hands each caller its
own reply: the same commands, the same answers, fewer round trips.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError


class Batched:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flushing = False
        self._scripts: dict[str, str] = {}

    async def call(self, *command: Any) -> Any:
        """The reply to ``command`` (an exception reply is raised)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((command, future))
        if not self._flushing:
            self._flushing = True
            # Runs once the requests that are ready now have queued theirs.
            loop.call_soon(self._flush_soon)
        reply = await future
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _flush_soon(self) -> None:
        task = asyncio.ensure_future(self._flush())
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._flushing = False
        try:
            replies = await self._send([command for command, _ in batch])
        except Exception as e:
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)

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
