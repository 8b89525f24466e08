"""Prometheus metrics of the framework's moving parts.

* :func:`metrics_middleware` counts and times every message a bus handles:
  ``ordersys_messages_total{kind, message_type, outcome}`` and
  ``ordersys_message_seconds{kind, message_type}``;
* :class:`ProjectionCollector` reports each projection's position and lag
  (``ordersys_projection_position``, ``ordersys_projection_lag``), read when
  Prometheus scrapes, so the figures are never stale;
* :class:`ServiceCollector` reports what a service's applications, relays,
  consumers and process managers are doing (events appended, relay lag,
  queue and dead-letter depth, sagas by status, overdue deadlines, which
  server a worker waits for: ``ordersys_worker_waiting{worker, server}``
  and ``ordersys_worker_outages_total``), and the leases its workers hold
  (``ordersys_leases_held{worker}``, ``ordersys_takeovers_total{worker}``:
  see :class:`~ordersys.leases.Leases`), also read at scrape time;
  :func:`service_registry` puts it all in one registry with the process's
  own figures;
* :func:`serve_metrics` exposes a registry at ``http://<host>:<port>/metrics``
  for processes that have no HTTP server of their own.

It needs prometheus-client (the ``[observability]`` extra); importing it
without raises :class:`~ordersys.extras.MissingExtra`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ordersys.application import Application
from ordersys.bus import Next
from ordersys.commands import Command
from ordersys.errors import InvalidInput
from ordersys.extras import loaded_class, needs
from ordersys.leases import Leases
from ordersys.messages import Message
from ordersys.middleware import timing_middleware
from ordersys.outages import Outages
from ordersys.processes import ProcessRunner
from ordersys.projections import ProjectionRunner

with needs("observability", "Measuring with Prometheus"):
    from prometheus_client import (
        GC_COLLECTOR,
        PLATFORM_COLLECTOR,
        PROCESS_COLLECTOR,
        REGISTRY,
        CollectorRegistry,
        Counter,
        Histogram,
    )
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.exposition import start_http_server
    from prometheus_client.registry import Collector

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


SAGA_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class ServiceCollector(Collector):
    """What a service's parts are doing, read when Prometheus scrapes."""

    def __init__(
        self, applications: Iterable[Application], workers: Iterable[object]
    ) -> None:
        self.applications = list(applications)
        self.workers = list(workers)

    def _of(self, kind: type[Any]) -> list[Any]:
        return [w for w in self.workers if isinstance(w, kind)]

    def _of_adapter(self, module: str, name: str) -> list[Any]:
        """The workers of class ``module.name``, without importing it: relays
        and consumers need the rabbitmq and postgres extras."""
        kind = loaded_class(module, name)
        return self._of(kind) if kind is not None else []

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield from ProjectionCollector(self._of(ProjectionRunner)).collect()
        appended = CounterMetricFamily(
            "ordersys_events_appended",
            "Events an application has recorded (its head position).",
            labels=["application"],
        )
        for app in self.applications:
            appended.add_metric([app.name], app.head_position())
        yield appended
        yield from self._relays()
        yield from self._consumers()
        yield from self._sagas()
        yield from self._outages()
        yield from self._leases()

    def _relays(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "ordersys_relay_lag",
            "Events recorded but not yet confirmed by the broker.",
            labels=["relay"],
        )
        position = GaugeMetricFamily(
            "ordersys_relay_position",
            "Position up to which the broker confirmed every event.",
            labels=["relay"],
        )
        for relay in self._of_adapter("ordersys.messaging.relay", "Relay"):
            at = relay.position()
            position.add_metric([relay.name], at)
            lag.add_metric([relay.name], max(relay.app.head_position() - at, 0))
        yield lag
        yield position

    def _consumers(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        waiting = GaugeMetricFamily(
            "ordersys_consumer_queue_depth",
            "Messages waiting in a consumer's queue.",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "ordersys_dead_letters",
            "Messages in a consumer queue's dead-letter queue.",
            labels=["queue"],
        )
        handled = CounterMetricFamily(
            "ordersys_consumer_messages",
            "Messages a consumer took, by outcome.",
            labels=["queue", "outcome"],
        )
        consumers = self._of_adapter("ordersys.messaging.consumer", "EventConsumer")
        for consumer in consumers:
            for outcome, n in sorted(consumer.outcomes.items()):
                handled.add_metric([consumer.name, outcome], n)
            try:
                depths = consumer.depths()
            except Exception:
                continue
            waiting.add_metric([consumer.name], depths["waiting"])
            dead.add_metric([consumer.name], depths["dead"])
        yield waiting
        yield dead
        yield handled

    def _outages(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        waiting = GaugeMetricFamily(
            "ordersys_worker_waiting",
            "1 while a worker waits for a server it cannot reach, else 0.",
            labels=["worker", "server"],
        )
        outages = CounterMetricFamily(
            "ordersys_worker_outages",
            "Outages of a server that a worker has waited out (or is waiting out).",
            labels=["worker", "server"],
        )
        for worker in self.workers:
            seen = getattr(worker, "outages", None)
            if not isinstance(seen, Outages):
                continue
            for server in seen.servers():
                labels = [seen.worker, server]
                waiting.add_metric(labels, int(server in seen.down))
                outages.add_metric(labels, seen.outages[server])
        yield waiting
        yield outages

    def _leases(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        held = GaugeMetricFamily(
            "ordersys_leases_held",
            "Leases (single-active work, partitions) a worker holds in this replica.",
            labels=["worker"],
        )
        takeovers = CounterMetricFamily(
            "ordersys_takeovers",
            "Leases a worker claimed after finding them held by another replica.",
            labels=["worker"],
        )
        seen: dict[int, Leases] = {}
        for worker in self.workers:
            leases = getattr(worker, "leases", None)
            if isinstance(leases, Leases):
                seen.setdefault(id(leases), leases)  # workers may share one
        for leases in seen.values():
            held.add_metric([leases.worker], len(leases.holding))
            takeovers.add_metric([leases.worker], leases.takeovers)
        yield held
        yield takeovers

    def _sagas(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        sagas = GaugeMetricFamily(
            "ordersys_sagas",
            "Sagas of a process manager by status.",
            labels=["process", "status"],
        )
        overdue = GaugeMetricFamily(
            "ordersys_saga_deadlines_overdue",
            "Saga deadlines due more than 5 s ago and not fired (stuck sagas).",
            labels=["process"],
        )
        owned = GaugeMetricFamily(
            "ordersys_saga_partitions_owned",
            "Saga partitions this replica's process manager runs.",
            labels=["process"],
        )
        takeovers = CounterMetricFamily(
            "ordersys_saga_takeovers",
            "Saga partitions claimed after the first round (from a replica "
            "that died, stopped or shared them).",
            labels=["process"],
        )
        sent = CounterMetricFamily(
            "ordersys_commands_sent",
            "Commands the process manager's sagas sent, by type (resends too).",
            labels=["process", "type"],
        )
        for runner in self._of(ProcessRunner):
            name = runner.manager.name
            for status in ("running", "completed", "failed"):
                sagas.add_metric([name, status], runner.sagas[status])
            overdue.add_metric([name], runner.overdue())
            owned.add_metric([name], runner.partitions_owned)
            takeovers.add_metric([name], runner.takeovers)
            for kind, count in sorted(runner.commands_sent.items()):
                sent.add_metric([name, kind], count)
        yield from (sagas, overdue, owned, takeovers, sent)


def service_registry(
    applications: Iterable[Application], workers: Iterable[object]
) -> CollectorRegistry:
    """A registry of one service: its parts, and the process's CPU, memory,
    garbage collection and Python version. Saga durations are observed into
    ``ordersys_saga_seconds`` as process runners see sagas finish."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    workers = list(workers)
    registry.register(ServiceCollector(applications, workers))
    durations = Histogram(
        "ordersys_saga_seconds",
        "Time from a saga's start to its end, by final status.",
        ["process", "status"],
        buckets=SAGA_BUCKETS,
        registry=registry,
    )
    for runner in workers:
        if isinstance(runner, ProcessRunner):
            process = runner.manager.name
            runner.on_finished = lambda status, seconds, process=process: (
                durations.labels(process, status).observe(seconds)
            )
    return registry


@dataclass(frozen=True)
class MetricsServer:
    """A running ``/metrics`` endpoint: the port it listens on, and how to stop it."""

    port: int
    stop: Callable[[], None]


def serve_metrics(
    port: int, host: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> MetricsServer:
    """Serve ``registry`` (by default the process's global one) at
    ``http://host:port/metrics`` (port 0: any free port); :class:`InvalidInput`
    naming the setting if that port cannot be listened on."""
    try:
        server, thread = start_http_server(
            port, addr=host, registry=registry or REGISTRY
        )
    except OSError as e:
        msg = (
            f"the metrics cannot be served on {host}:{port} ({e.strerror or e}): "
            "choose another with ORDERSYS_METRICS_PORT (`ordersys up`: --metrics-port)"
        )
        raise InvalidInput(msg, field="metrics_port") from None

    def stop() -> None:
        server.shutdown()
        thread.join(5)

    return MetricsServer(server.server_address[1], stop)
