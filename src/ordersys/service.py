"""A service: one deployable unit composed from ordersys' parts.

It answers its commands and queries over the transport, and runs its
projections, process managers, relays and consumers in background threads.
``start()`` brings them up in order (the things that produce work last) and
``stop()`` takes them down in reverse.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ordersys import operations
from ordersys.application import Application
from ordersys.commands import CommandBus
from ordersys.extras import installed
from ordersys.middleware import database_outage_middleware, logging_middleware
from ordersys.queries import QueryBus
from ordersys.settings import Settings
from ordersys.transport import Transport, serve_bus

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ordersys.observability.metrics import MetricsServer

logger = logging.getLogger("ordersys.service")


class Worker(Protocol):
    """Anything that runs in the background: projection and process runners,
    relays, consumers."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Service:
    name: str
    settings: Settings
    transport: Transport
    applications: list[Application] = field(default_factory=list)
    commands: CommandBus = field(
        default_factory=lambda: CommandBus(middleware=[logging_middleware])
    )
    queries: QueryBus = field(
        default_factory=lambda: QueryBus(middleware=[logging_middleware])
    )
    workers: list[Worker] = field(default_factory=list)
    started: bool = False
    metrics: MetricsServer | None = None

    def __post_init__(self) -> None:
        self.registry: CollectorRegistry | None = None
        outage = database_outage_middleware(self.settings.postgres_address)
        for bus in (self.commands, self.queries):
            bus.add_middleware(outage)
        if installed("observability"):
            self._measure()
        operations.install(self)

    def start(self) -> None:
        """Run the workers, then answer requests (and metrics, on
        ``ORDERSYS_METRICS_PORT`` unless it is 0)."""
        for worker in self.workers:
            worker.start()
        if self.settings.metrics_port:
            # MissingExtra here, not at creation, without prometheus-client.
            from ordersys.observability.metrics import serve_metrics

            self.metrics = serve_metrics(
                self.settings.metrics_port,
                self.settings.metrics_host,
                registry=self.registry,
            )
        serve_bus(
            self.transport,
            self.name,
            self.commands,
            self.queries,
            applications=self.applications,
        )
        self.started = True
        logger.info("%s is serving %s", self.name, sorted(self.handled()))

    def _measure(self) -> None:
        """Count and time what the buses handle, in a registry of this service's
        own. Only with prometheus-client (the observability extra): without it
        a service measures nothing."""
        from ordersys.observability.metrics import metrics_middleware, service_registry

        self.registry = service_registry(self.applications, self.workers)
        measure = metrics_middleware(self.registry)
        for bus in (self.commands, self.queries):
            bus.add_middleware(measure)

    def handled(self) -> list[str]:
        return [*self.commands.message_types, *self.queries.message_types]

    def stop(self) -> None:
        """Stop answering, then stop the workers and close the applications."""
        self.transport.close()
        if self.metrics is not None:
            self.metrics.stop()
            self.metrics = None
        for worker in reversed(self.workers):
            try:
                worker.stop()
            except Exception:
                logger.exception("%s: a worker did not stop cleanly", self.name)
        for application in self.applications:
            application.close()
        self.started = False

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
