"""The transport inside one process: requests call their handler directly, and
events are handed to the matching queues' handlers as they are published."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from ordersys.errors import OrdersysError, RequestTimeout
from ordersys.transport import (
    Envelope,
    EventHandler,
    RequestHandler,
    Transport,
    answered_here,
    handling,
    reply_from,
    result_of,
    topic_matches,
)

logger = logging.getLogger("ordersys.transport")


class MemoryTransport(Transport):
    """Everything in this process: requests call their handler directly, and
    events are handed to the matching queues' handlers as they are published."""

    def __init__(self) -> None:
        self._services: dict[str, RequestHandler] = {}
        self._queues: dict[str, tuple[list[str], EventHandler]] = {}
        self._lock = threading.Lock()

    def call(self, service: str, envelope: Envelope, timeout: float) -> Any:
        handler = self._services.get(service)
        if handler is None:
            raise RequestTimeout(
                f"{service} did not reply to {envelope.message_type} within "
                f"{timeout}s: no instance of it is running",
                service=service,
            )
        return result_of(reply_from(handler, envelope))

    def call_many(
        self,
        requests: Sequence[tuple[str, Envelope]],
        timeout: float,
        *,
        commands: bool = False,  # noqa: ARG002 (answered together anyway)
    ) -> list[Any | OrdersysError]:
        """Each service's requests answered together (one transaction for
        its commands, see :func:`~ordersys.transport.replies_from`)."""
        here = answered_here(self._services, requests)
        outcomes: list[Any | OrdersysError] = []
        for n, (service, envelope) in enumerate(requests):
            if n in here:
                outcomes.append(here[n])
                continue
            try:
                outcomes.append(self.call(service, envelope, timeout))
            except OrdersysError as e:
                outcomes.append(e)
        return outcomes

    def serve(self, service: str, handler: RequestHandler) -> None:
        self._services[service] = handler

    def is_served(self, service: str) -> bool:
        return service in self._services

    def publish(self, routing_key: str, envelope: Envelope) -> None:
        with self._lock:
            queues = list(self._queues.items())
        for queue, (patterns, handler) in queues:
            if any(topic_matches(p, routing_key) for p in patterns):
                try:
                    with handling(envelope):
                        handler(envelope)
                except Exception:
                    logger.exception("%s: %s not handled", queue, envelope.message_type)

    def subscribe(
        self, queue: str, patterns: Sequence[str], handler: EventHandler
    ) -> None:
        with self._lock:
            self._queues[queue] = (list(patterns), handler)

    def close(self) -> None:
        self._services.clear()
        self._queues.clear()
