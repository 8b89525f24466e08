"""Starting before the servers are there: a service waits for the servers it
needs, with backoff, until the start-up timeout, instead of exiting on the
first refused connection.

It says once which server it waits for, and gives up with one typed error
naming the server and its address; no traceback reaches the terminal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from ordersys.errors import InfrastructureUnavailable, OrdersysError
from ordersys.settings import Settings

T = TypeVar("T")

FIRST_DELAY = 0.25
LONGEST_DELAY = 5.0


class GaveUp(OrdersysError):
    """A server the service needs did not answer within the start-up timeout."""

    code = "unavailable"
    http_status = 503


@dataclass(frozen=True)
class Server:
    """A server a service needs, and how to see that it answers."""

    name: str
    address: str
    probe: Callable[[], object]

    def check(self) -> None:
        """Raise :class:`InfrastructureUnavailable` naming this server unless it
        answers."""
        try:
            self.probe()
        except InfrastructureUnavailable as e:
            raise InfrastructureUnavailable(self.name, self.address, e.reason) from None


def host_and_port(url: str, default_port: int) -> str:
    """``host:port`` of a server URL, as people name a server."""
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or default_port}"


def servers_needed(settings: Settings, *, rabbitmq: bool = True) -> list[Server]:
    """The servers a distributed service needs before it can start: PostgreSQL
    (unless events live elsewhere) and RabbitMQ. Redis is left out: a cache
    that is down is passed by."""
    # Imported here: the probes' client libraries are optional extras.
    from ordersys.doctor import postgres_version, rabbitmq_version

    servers = []
    if settings.persistence == "postgres":
        servers.append(
            Server(
                "PostgreSQL",
                settings.postgres_address,
                lambda: postgres_version(settings),
            )
        )
    if rabbitmq:
        servers.append(
            Server(
                "RabbitMQ",
                host_and_port(settings.rabbitmq_url, 5672),
                lambda: rabbitmq_version(settings),
            )
        )
    return servers


def when_available(
    attempt: Callable[[], T],
    *,
    timeout: float,
    stopping: threading.Event,
    say: Callable[[str], None],
) -> T | None:
    """The result of ``attempt()``, called again with backoff while it raises
    :class:`InfrastructureUnavailable`; None if ``stopping`` is set meanwhile.

    ``say`` hears "waiting for <server> at <address>" once per server waited
    for; after ``timeout`` seconds :class:`GaveUp` names the last one."""
    deadline = time.monotonic() + timeout
    delay = FIRST_DELAY
    waiting_for = ""
    while True:
        try:
            return attempt()
        except InfrastructureUnavailable as e:
            where = f"{e.server} at {e.address}"
            if where != waiting_for:
                say(f"waiting for {where}")
                waiting_for = where
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reason = e.reason.strip()
                msg = f"gave up waiting for {where} after {timeout:g} s ({reason})"
                raise GaveUp(msg, server=e.server, address=e.address) from None
        if stopping.wait(min(delay, remaining)):
            return None
        delay = min(delay * 2, LONGEST_DELAY)
