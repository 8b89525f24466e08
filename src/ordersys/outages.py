"""Riding out a server's outage: a worker waits, it does not fail.

A relay, consumer, projection runner or process runner that cannot reach
PostgreSQL, RabbitMQ or Redis has done nothing wrong, and neither has the
message or event in its hands: it waits, with a bounded exponential backoff,
and tries again for as long as it takes. :class:`Outages` keeps that state
for one worker: one log line when it starts waiting for a server and one when
the server is back (not one per attempt), and what the metrics report
(``ordersys_worker_waiting``, ``ordersys_worker_outages_total``).

:func:`server_of` tells an outage from any other error: only the others count
toward a message's dead-letter limit or an event's parking.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import cache
from typing import TypeVar

from ordersys.errors import InfrastructureUnavailable

logger = logging.getLogger("ordersys.outages")

T = TypeVar("T")

_CLIENT_ERRORS = {
    "PostgreSQL": (
        ("psycopg", "OperationalError"),
        ("psycopg", "InterfaceError"),
        ("eventsourcing.persistence", "OperationalError"),
        ("eventsourcing.persistence", "InterfaceError"),
    ),
    "RabbitMQ": (
        ("kombu.exceptions", "OperationalError"),
        ("amqp.exceptions", "ConnectionError"),
        ("amqp.exceptions", "RecoverableConnectionError"),
    ),
    "Redis": (
        ("redis.exceptions", "ConnectionError"),
        ("redis.exceptions", "TimeoutError"),
    ),
}
"""The client libraries' errors for a lost or refused connection (and, for
PostgreSQL, a server shutting down, starting up, or rolling back a deadlock),
by server. Looked up lazily: each client is an optional extra."""

_NOT_OUTAGES = (("psycopg_pool", "PoolClosed"),)
"""Errors among those that are the caller's own doing: a pool it closed."""


def _types(names: tuple[tuple[str, str], ...]) -> tuple[type[BaseException], ...]:
    import importlib

    found = []
    for module_name, name in names:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found.append(getattr(module, name))
    return tuple(found)


@cache
def _client_errors() -> tuple[tuple[str, tuple[type[BaseException], ...]], ...]:
    found = [(server, _types(names)) for server, names in _CLIENT_ERRORS.items()]
    # Socket errors come from the AMQP client: the others wrap theirs.
    found.append(("RabbitMQ", (ConnectionError, TimeoutError)))
    return tuple(found)


@cache
def _not_outages() -> tuple[type[BaseException], ...]:
    return _types(_NOT_OUTAGES)


def server_of(error: BaseException) -> str | None:
    """The server whose outage ``error`` is, or None if it is an error of the
    work itself (a bug, a poison message, a refusal)."""
    if isinstance(error, InfrastructureUnavailable):
        return error.server
    cause: BaseException | None = error
    while cause is not None:  # eventsourcing wraps psycopg's errors
        if isinstance(cause, _not_outages()):
            return None
        cause = cause.__cause__
    for server, types in _client_errors():
        if isinstance(error, types):
            return server
    return None


class Outages:
    """The servers one worker is waiting for, and how long it waits next.

    Waits start at ``first_wait`` seconds and double up to ``longest_wait``;
    the first success after an outage resets them. Thread-safe: a worker's
    threads may report into one instance.
    """

    def __init__(
        self, worker: str, *, first_wait: float = 0.1, longest_wait: float = 2.0
    ) -> None:
        self.worker = worker
        self.first_wait = first_wait
        self.longest_wait = longest_wait
        self.down: dict[str, float] = {}
        """The servers being waited for, with when the wait began (monotonic)."""
        self.outages: Counter[str] = Counter()
        """Outages seen, by server."""
        self._next_wait = first_wait
        self._failing: set[str] = set()
        self._lock = threading.Lock()

    def servers(self) -> list[str]:
        """Every server this worker has waited for, for the metrics."""
        with self._lock:
            return sorted(set(self.outages) | set(self.down))

    def noticed(self, error: BaseException) -> float:
        """Record that ``error`` is an outage; the seconds to wait before the
        next attempt. Logs only when the outage begins."""
        server = server_of(error) or "a server"
        with self._lock:
            if server not in self.down:
                self.down[server] = time.monotonic()
                self.outages[server] += 1
                logger.warning("%s: waiting for %s", self.worker, _what(server, error))
            wait = self._next_wait
            self._next_wait = min(wait * 2, self.longest_wait)
        return wait

    def wait(self, error: BaseException, stopping: threading.Event) -> None:
        """Record the outage and wait before the next attempt (less if
        ``stopping`` is set meanwhile)."""
        stopping.wait(self.noticed(error))

    def over(self, server: str | None = None) -> None:
        """The last attempt worked: ``server`` (every server, if None) is back."""
        with self._lock:
            if not self.down:
                return
            back = [server] if server is not None else list(self.down)
            for name in back:
                began = self.down.pop(name, None)
                if began is not None:
                    logger.warning(
                        "%s: %s is back after %.1fs; resuming",
                        self.worker,
                        name,
                        time.monotonic() - began,
                    )
            if not self.down:
                self._next_wait = self.first_wait

    def attempt(self, step: Callable[[], T], stopping: threading.Event) -> T | None:
        """``step()``'s result, or None if it met an outage (the wait is over
        then, and the caller tries again). Any other error is raised. A
        success ends the outages that made ``step`` fail, not those it rides
        out itself (a cache it passes by, say)."""
        try:
            result = step()
        except Exception as e:
            server = server_of(e)
            if server is None:
                raise
            self._failing.add(server)
            self.wait(e, stopping)
            return None
        while self._failing:
            self.over(self._failing.pop())
        return result


def _what(server: str, error: BaseException) -> str:
    """``RabbitMQ at 127.0.0.1:5672: Connection refused``, as far as known."""
    if isinstance(error, InfrastructureUnavailable):
        return f"{server} at {error.address}: {error.reason}"
    reason = str(error).strip()
    return f"{server}: {reason.splitlines()[0] if reason else repr(error)}"
