"""A system: its services declared once, run in one process or one per process.

Each service is declared by a function that composes it from ordersys' parts
(its applications, projections, process managers, relays and consumers, see
:class:`~ordersys.service.Service`) over a settings object and a transport,
or by that function's topic (``"package.module:build"``), imported only when
the service is composed: a process that runs one service imports only its
code. A :class:`System` names them in the order they start: consumers first,
so that they listen before the first event is published, and entry points last.

* :meth:`System.service` builds one of them over the transport it is given:
  each service in a process of its own, over the servers (RabbitMQ,
  PostgreSQL, Redis); that is what ``ordersys run <name>`` does.
* :meth:`System.embedded` builds every one in this process, over one
  in-process transport, on SQLite or in memory: the embedded mode, where
  nothing connects to a server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import import_module
from typing import Any, Generic, TypeVar

from ordersys.errors import InvalidInput
from ordersys.service import Service
from ordersys.settings import Settings
from ordersys.transport import (
    Broker,
    Envelope,
    EventHandler,
    RequestHandler,
    Transport,
)
from ordersys.transport.memory import MemoryTransport

logger = logging.getLogger("ordersys.system")

S = TypeVar("S", bound=Settings)

Compose = Callable[[S, Transport], Service]
"""Composes one service from the settings and the transport it runs over."""


@dataclass(frozen=True)
class System(Generic[S]):
    """The services of a system, by name, in the order they start."""

    name: str
    services: Mapping[str, Compose[S] | str]

    @property
    def names(self) -> list[str]:
        return list(self.services)

    def compose(self, name: str) -> Compose[S]:
        """What composes service ``name``; :class:`InvalidInput` naming the
        known ones if there is none of that name."""
        declared = self.services.get(name)
        if declared is None:
            known = ", ".join(self.services)
            msg = f"{self.name} has no service {name!r} (it has {known})"
            raise InvalidInput(msg, field="service")
        if isinstance(declared, str):
            module, _, function = declared.partition(":")
            composer: Compose[S] = getattr(import_module(module), function)
            return composer
        return declared

    def service(self, name: str, settings: S, transport: Transport) -> Service:
        """Service ``name`` composed over ``transport``."""
        return self.compose(name)(settings, transport)

    def composers(self) -> dict[str, Compose[S]]:
        """Each service's composer by name, importing its code on first call."""
        return {name: partial(self.service, name) for name in self.services}

    def embedded(self, settings: S) -> Embedded:
        """Every service in this process, over one in-process transport;
        ``settings`` must keep events on SQLite or in memory."""
        if settings.persistence == "postgres":
            msg = (
                f"{self.name} runs embedded on SQLite or in memory, not on "
                "PostgreSQL: set ORDERSYS_PERSISTENCE=sqlite (or memory)"
            )
            raise InvalidInput(msg, field="persistence")
        return Embedded(self, settings)


class Embedded:
    """A system's services running together in this process.

    ``start()`` starts them in the system's order (and stops those started if
    one fails); ``stop()`` stops them in reverse, then closes the transport
    they share: a service stopping must not cut off one still running.
    """

    def __init__(self, system: System[Any], settings: Settings) -> None:
        self.transport = MemoryTransport()
        shared = SharedTransport(self.transport)
        self.services = [
            system.service(name, settings, shared) for name in system.names
        ]
        self.started: list[Service] = []

    def __getitem__(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def __iter__(self) -> Iterator[Service]:
        return iter(self.services)

    def start(self) -> None:
        for service in self.services:
            try:
                service.start()
            except BaseException:
                self.stop()
                raise
            self.started.append(service)
            logger.info("%s ready", service.name)

    def stop(self) -> None:
        while self.started:
            service = self.started.pop()
            try:
                service.stop()
            except Exception:
                logger.exception("%s did not stop cleanly", service.name)
        self.transport.close()

    def __enter__(self) -> Embedded:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SharedTransport(Transport):
    """A transport that several services of this process share: each uses it
    as its own, but closing it is left to its owner."""

    def __init__(self, transport: Transport) -> None:
        self.inner = transport

    def is_served(self, service: str) -> bool:
        return self.inner.is_served(service)

    def broker(self) -> Broker | None:
        return self.inner.broker()

    def call(self, service: str, envelope: Envelope, timeout: float) -> Any:
        return self.inner.call(service, envelope, timeout)

    def serve(self, service: str, handler: RequestHandler) -> None:
        self.inner.serve(service, handler)

    def publish(self, routing_key: str, envelope: Envelope) -> None:
        self.inner.publish(routing_key, envelope)

    def subscribe(
        self, queue: str, patterns: Sequence[str], handler: EventHandler
    ) -> None:
        self.inner.subscribe(queue, patterns, handler)

    def close(self) -> None:
        """Nothing: the owner closes the transport once every user is done."""
