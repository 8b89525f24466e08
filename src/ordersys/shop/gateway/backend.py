"""How the gateway reaches the services: requests over the transport, made from
a thread pool of the gateway's own so that the event loop never blocks on a
reply, plus the shared Redis client of the gateway's own state."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ordersys.errors import InfrastructureUnavailable, OrdersysError, RequestTimeout
from ordersys.shop.gateway.gathering import Gathering
from ordersys.shop.routes import service_for
from ordersys.transport import Envelope, Transport

T = TypeVar("T")

DOWN_MEMORY = 10.0
"""Seconds a service found down is checked before each call to it, instead of
waiting a whole timeout for a reply that cannot come."""


class Backend:
    """Sends the gateway's commands and queries to the services."""

    def __init__(self, transport: Transport, timeout: float, workers: int = 32) -> None:
        self.transport = transport
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="gateway-rpc")
        self._down_until: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: set[asyncio.Future[Any]] = set()
        self._stopping = False
        self._commands: Gathering[tuple[str, Envelope]] = Gathering(self._send_commands)

    async def call(self, message_type: str, request_id: str, **body: Any) -> Any:
        """The service's reply to ``message_type`` with ``body``; raises the
        typed error it answered with (or :class:`RequestTimeout`)."""
        envelope = Envelope.new(message_type, body, correlation_id=request_id)
        service = service_for(message_type)
        await self._unless_down(service)
        try:
            return await self.run(self.transport.call, service, envelope, self.timeout)
        except RequestTimeout as e:
            raise await self._timed_out(service, e) from None

    async def command(self, message_type: str, request_id: str, **body: Any) -> Any:
        """:meth:`call` for a command. The commands of concurrent requests go
        out together: a service's travel as one message, which it answers in
        one unit of work (:meth:`~ordersys.transport.Transport.call_many`)."""
        envelope = Envelope.new(message_type, body, correlation_id=request_id)
        service = service_for(message_type)
        await self._unless_down(service)
        try:
            return await self._commands((service, envelope))
        except RequestTimeout as e:
            raise await self._timed_out(service, e) from None

    async def _send_commands(
        self, requests: list[tuple[str, Envelope]]
    ) -> list[Any | OrdersysError]:
        outcomes: list[Any | OrdersysError] = await self.run(
            functools.partial(self.transport.call_many, commands=True),
            requests,
            self.timeout,
        )
        return outcomes

    async def _unless_down(self, service: str) -> None:
        if self._down_until.get(service, 0.0) > time.monotonic():
            # Found down a moment ago: ask the broker (milliseconds) rather
            # than wait out another timeout.
            if await self.run(self.is_down, service):
                raise self._down(service)
            self._down_until.pop(service, None)

    async def _timed_out(self, service: str, timeout: RequestTimeout) -> Exception:
        """What a request to ``service`` that timed out answers: 503 if no
        instance of it is running (remembered for a while), else ``timeout``."""
        if await self.run(self.is_down, service):
            self._down_until[service] = time.monotonic() + DOWN_MEMORY
            return self._down(service)
        return timeout

    def _down(self, service: str) -> InfrastructureUnavailable:
        return InfrastructureUnavailable(
            f"the {service} service",
            self.transport.address,
            "no instance of it is running",
        )

    def is_down(self, service: str) -> bool:
        """True if nothing answers ``service``'s requests (told apart from a
        slow service only after a timeout, so that it costs nothing on the way
        of a reply)."""
        return not self.transport.is_served(service)

    async def run(self, function: Any, *args: Any) -> Any:
        """Run a blocking ``function(*args)`` on the gateway's threads; once
        the gateway is stopping, :class:`InfrastructureUnavailable` instead."""
        if self._stopping:
            raise self._shutting_down()
        loop = self._loop = asyncio.get_running_loop()
        # In the request's context: its trace span and log fields go along.
        context = contextvars.copy_context()
        future = loop.run_in_executor(
            self._pool, functools.partial(context.run, function, *args)
        )
        self._waiting.add(future)
        try:
            return await future
        except asyncio.CancelledError:
            if not self._stopping or not future.cancelled():
                raise
            raise self._shutting_down() from None
        finally:
            self._waiting.discard(future)

    def stop_waiting(self) -> None:
        """Answer the requests still waiting for a service (503) and refuse new
        ones: a stopping gateway's services may be stopping too, and uvicorn
        would otherwise cut those requests off at the end of its grace period.
        Called from any thread."""
        self._stopping = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._cancel_waiting)

    def _cancel_waiting(self) -> None:
        for future in list(self._waiting):
            future.cancel()

    def _shutting_down(self) -> InfrastructureUnavailable:
        return InfrastructureUnavailable(
            "the gateway", self.transport.address, "it is shutting down"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
