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

The API is imported on first use, and only if it is installed (the
``[observability]`` extra): without it nothing is traced, and events carry no
trace context.
"""

from __future__ import annotations

import contextlib
import enum
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ordersys.extras import needs

if TYPE_CHECKING:
    from types import ModuleType

    from opentelemetry.trace import Span, Tracer

TRACE_FIELD = "trace_context"
"""The attribute of a stored event that carries the span context it was written in."""


class SpanKind(enum.Enum):
    """What a span stands for: OpenTelemetry's span kinds, by name."""

    INTERNAL = enum.auto()
    SERVER = enum.auto()
    CLIENT = enum.auto()
    PRODUCER = enum.auto()
    CONSUMER = enum.auto()


@dataclass(frozen=True)
class _Api:
    trace: ModuleType
    propagate: ModuleType
    tracer: Tracer


@functools.cache
def _api() -> _Api | None:
    """OpenTelemetry's API, or None if it is not installed."""
    try:
        from opentelemetry import propagate, trace
    except ModuleNotFoundError:
        return None
    return _Api(trace, propagate, trace.get_tracer("ordersys"))


def current_carrier() -> dict[str, str]:
    """The current span context as headers (empty outside a recording span)."""
    api = _api()
    carrier: dict[str, str] = {}
    if api is not None and api.trace.get_current_span().get_span_context().is_valid:
        api.propagate.inject(carrier)
    return carrier


def inject_into(headers: dict[str, str]) -> None:
    """Put the current span context into ``headers`` (if there is one)."""
    headers.update(current_carrier())


@contextlib.contextmanager
def span(
    name: str,
    carrier: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    **attributes: str | int,
) -> Iterator[Span | None]:
    """A span named ``name``, child of the context in ``carrier`` if it has
    one (else of the current span), current while the block runs; None
    without OpenTelemetry."""
    api = _api()
    if api is None:
        yield None
        return
    parent = None
    if carrier and "traceparent" in carrier:
        parent = api.propagate.extract({k: str(v) for k, v in carrier.items()})
    with api.tracer.start_as_current_span(
        name,
        context=parent,
        kind=api.trace.SpanKind[kind.name],
        attributes=attributes,
    ) as current:
        yield current


def trace_fields(current: Span | None) -> dict[str, str]:
    """``{"trace_id": ...}`` for log lines, if ``current`` is a real span."""
    context = current.get_span_context() if current is not None else None
    if context is None or not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x")}


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
    (e.g. ``http://jaeger:4318``), and trace psycopg and redis calls too;
    :class:`~ordersys.extras.MissingExtra` without the observability extra."""
    with needs("observability", "Exporting traces (ORDERSYS_OTLP_ENDPOINT)"):
        from ordersys.observability.otlp import export_spans
    export_spans(service, endpoint, schedule_delay_ms=schedule_delay_ms)


def shutdown_tracing() -> None:
    """Flush and stop the exporter (at the end of ``ordersys run``)."""
    api = _api()
    provider = api.trace.get_tracer_provider() if api is not None else None
    shutdown = getattr(provider, "shutdown", None)
    if callable(shutdown):
        shutdown()
