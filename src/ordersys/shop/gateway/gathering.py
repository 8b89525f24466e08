"""What concurrent requests hand in while the event loop is busy, sent together.

Requests that arrive together reach the same step together: the Redis reads
of a burst of POSTs come back in one reply, and the requests then all issue
their command in the same turn of the loop. Sent one by one, each would pay
for a round trip of its own (a write, a read, a wake-up of the loop, a thread
of the gateway's pool). :class:`Gathering` holds what is handed in until the
loop has run every request that is ready, then sends it all in one call and
gives each caller its own outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")

Send = Callable[[list[T]], Awaitable[Sequence[Any]]]
"""Sends the items gathered; returns an outcome for each, in their order (an
exception outcome is raised to that caller alone). If it raises, every
caller of the batch gets that exception."""


class Gathering(Generic[T]):
    def __init__(self, send: Send[T]) -> None:
        self._send = send
        self._pending: list[tuple[T, asyncio.Future[Any]]] = []
        self._flushing = False

    async def __call__(self, item: T) -> Any:
        """The outcome of ``item``, sent with the others handed in meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((item, future))
        if not self._flushing:
            self._flushing = True
            # Runs once the requests that are ready now have handed in theirs.
            loop.call_soon(self._flush_soon)
        outcome = await future
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _flush_soon(self) -> None:
        task = asyncio.ensure_future(self._flush())
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._flushing = False
        try:
            outcomes = await self._send([item for item, _ in batch])
        except Exception as e:
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)
