"""Traces that follow one unit of work (an order, say) across services.

The framework uses the OpenTelemetry API only, which does nothing until a
process configures the SDK (:func:`configure_tracing`, called by
``ordersys run`` when ``ORDERSYS_OTLP_ENDPOINT`` is set). Where the work goes:

* over the transport: the caller's span context travels in the message headers
  (W3C ``traceparent``), and the receiver handles the message in a child span;
* into the event store: every event written inside a span keeps that span's
  context (``trace_context``, beside the event's own fields), so the relay, the
  consumers and the process managers that meet the event later, in another
  process and maybe after a restart, continue the same trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.util.types import Attributes

TRACE_FIELD = "trace_context"
"""The attribute of a stored event that carries the span context it was written in."""

tracer = trace.get_tracer("ordersys")


def current_carrier() -> dict[str, str]:
    """The current span context as headers (empty outside a recording span)."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(carrier)
    return carrier


def inject_into(headers: dict[str, str]) -> None:
    """Put the current span context into ``headers`` (if there is one)."""
    headers.update(current_carrier())


@contextlib.contextmanager
def span(
    name: str,
    carrier: Mapping[str, Any] | None = None,
    *,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    **attributes: str | int,
) -> Iterator[trace.Span]:
    """A span named ``name``, child of the context in ``carrier`` if it has
    one (else of the current span), current while the block runs."""
    parent = None
    if carrier and "traceparent" in carrier:
        parent = propagate.extract({k: str(v) for k, v in carrier.items()})
    with tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes
    ) as current:
        yield current


def trace_fields(current: trace.Span) -> dict[str, str]:
    """``{"trace_id": ...}`` for log lines, if ``current`` is a real span."""
    context = current.get_span_context()
    return {"trace_id": format(context.trace_id, "032x")} if context.is_valid else {}


def stamp(domain_events: Any, carrier: dict[str, str] | None = None) -> None:
    """Record ``carrier`` (by default the current span context) on each of
    ``domain_events`` that has none yet (frozen dataclasses: set through
    ``object.__setattr__``); nothing outside a span."""
    carrier = carrier if carrier is not None else current_carrier()
    if not carrier:
        return
    for domain_event in domain_events:
        if carrier_of(domain_event) is None:
            object.__setattr__(domain_event, TRACE_FIELD, carrier)


def carrier_of(domain_event: Any) -> dict[str, str] | None:
    """The span context ``domain_event`` was written in, if it kept one."""
    carried = getattr(domain_event, TRACE_FIELD, None)
    return dict(carried) if isinstance(carried, dict) else None


def configure_tracing(
    service: str, endpoint: str, *, schedule_delay_ms: int = 1000
) -> None:
    """Export this process's spans as ``service`` to the OTLP/HTTP ``endpoint``
    (e.g. ``http://jaeger:4318``), and trace psycopg and redis calls too."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(root=_NoOrphanQueries()),
    )
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_ms)
    )
    trace.set_tracer_provider(provider)
    PsycopgInstrumentor().instrument(skip_dep_check=True)
    RedisInstrumentor().instrument()


class _NoOrphanQueries(Sampler):
    """Keeps every span but a database or cache call outside any trace: the
    polls of background loops would otherwise make a trace each, many a second."""

    def should_sample(
        self,
        parent_context: context.Context | None,  # noqa: ARG002 (the interface's)
        trace_id: int,  # noqa: ARG002 (the interface's)
        name: str,  # noqa: ARG002 (the interface's)
        kind: trace.SpanKind | None = None,  # noqa: ARG002 (the interface's)
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,  # noqa: ARG002 (the interface's)
        trace_state: trace.TraceState | None = None,  # noqa: ARG002 (the interface's)
    ) -> SamplingResult:
        orphan_query = bool(attributes) and "db.system" in (attributes or {})
        decision = Decision.DROP if orphan_query else Decision.RECORD_AND_SAMPLE
        return SamplingResult(decision, attributes)

    def get_description(self) -> str:
        return "NoOrphanQueries"


def shutdown_tracing() -> None:
    """Flush and stop the exporter (at the end of ``ordersys run``)."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if callable(shutdown):
        shutdown()
