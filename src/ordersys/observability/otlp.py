"""Exporting spans over OTLP/HTTP: the OpenTelemetry SDK side of tracing,
imported only by a process that exports (``ordersys run`` with
``ORDERSYS_OTLP_ENDPOINT`` set)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.util.types import Attributes

from ordersys.extras import installed


def export_spans(service: str, endpoint: str, *, schedule_delay_ms: int) -> None:
    """Send this process's spans as ``service`` to ``endpoint``, and trace the
    psycopg and redis calls of the extras that are installed."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(root=_NoOrphanQueries()),
    )
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_ms)
    )
    trace.set_tracer_provider(provider)
    if installed("postgres"):
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        PsycopgInstrumentor().instrument(skip_dep_check=True)
    if installed("redis"):
        from opentelemetry.instrumentation.redis import RedisInstrumentor

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
