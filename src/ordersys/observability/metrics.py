"""Prometheus metrics of the framework's moving parts.

* :func:`metrics_middleware` counts and times every message a bus handles:
  ``ordersys_messages_total{kind, message_type, outcome}`` and
  ``ordersys_message_seconds{kind, message_type}``;
* :class:`ProjectionCollector` reports each projection's position and lag
  (``ordersys_projection_position``, ``ordersys_projection_lag``), read when
  Prometheus scrapes, so the figures are never stale;
* :func:`serve_metrics` exposes a registry at ``http://<host>:<port>/metrics``
  for processes that have no HTTP server of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from ordersys.bus import Next
from ordersys.commands import Command
from ordersys.messages import Message
from ordersys.middleware import timing_middleware
from ordersys.projections import ProjectionRunner

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


def metrics_middleware(
    registry: CollectorRegistry = REGISTRY,
) -> Callable[[Message, Next], Any]:
    """A bus middleware that counts messages by outcome and times them.

    The outcome is ``ok``, the code of the domain error raised (``not_found``,
    ``conflict``, ...), or ``error`` for anything else.
    """
    handled = Counter(
        "ordersys_messages",
        "Messages handled by a command or query bus, by outcome.",
        ["kind", "message_type", "outcome"],
        registry=registry,
    )
    seconds = Histogram(
        "ordersys_message_seconds",
        "Time spent handling a message, middleware included.",
        ["kind", "message_type"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )

    def observe(message: Message, elapsed: float, outcome: str) -> None:
        kind = "command" if isinstance(message, Command) else "query"
        name = type(message).message_type
        seconds.labels(kind, name).observe(elapsed)
        handled.labels(kind, name, outcome).inc()

    return timing_middleware(observe)


class ProjectionCollector(Collector):
    """Position and lag of projection runners, read at scrape time."""

    def __init__(self, runners: Iterable[ProjectionRunner[Any]]) -> None:
        self.runners = list(runners)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        position = GaugeMetricFamily(
            "ordersys_projection_position",
            "Position of the last event a projection has applied.",
            labels=["projection", "application"],
        )
        lag = GaugeMetricFamily(
            "ordersys_projection_lag",
            "Events recorded but not yet applied by a projection.",
            labels=["projection", "application"],
        )
        for runner in self.runners:
            labels = [runner.namespace, runner.application.name]
            applied = runner.position()
            head = runner.application.head_position()
            position.add_metric(labels, applied)
            lag.add_metric(labels, max(head - applied, 0))
        yield position
        yield lag


@dataclass(frozen=True)
class MetricsServer:
    """A running ``/metrics`` endpoint: the port it listens on, and how to stop it."""

    port: int
    stop: Callable[[], None]


def serve_metrics(
    port: int, host: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY
) -> MetricsServer:
    """Serve ``registry`` at ``http://host:port/metrics`` (port 0: any free port)."""
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        thread.join(5)

    return MetricsServer(server.server_address[1], stop)
