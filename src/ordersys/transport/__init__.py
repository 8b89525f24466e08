"""The bus transport: how commands, queries and events cross process boundaries.

Two kinds of traffic, one port:

* **requests** (commands and queries): ``call(service, envelope)`` delivers an
  envelope to the one consumer group serving ``service`` and waits, bounded, for
  its reply; ``serve(service, handler)`` answers them;
* **events**: ``publish(routing_key, envelope)`` hands an event to every queue
  bound to a matching pattern (AMQP topic rules: ``*`` is one word, ``#`` zero or
  more); ``subscribe(queue, patterns, handler)`` consumes one queue.

The port lives here; one module per adapter: :mod:`ordersys.transport.memory`
(inside one process: the embedded mode and unit tests) and
:mod:`ordersys.transport.rabbitmq` (over RabbitMQ, the ``[rabbitmq]`` extra).
Both are held to one contract suite. :func:`serve_bus` and :class:`RpcSender`
put an ``ordersys`` command bus on either side of a transport.
"""

from __future__ import annotations

import logging
import uuid
from abc import ABC, abstractmethod
from collections import Counter as CounterOf
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from ordersys.bus import MessageBus
from ordersys.errors import (
    HandlerNotFound,
    OrdersysError,
    error_from_dict,
)
from ordersys.observability.logs import log_context
from ordersys.observability.tracing import (
    SpanKind,
    current_carrier,
    span,
    trace_fields,
)
from ordersys.queries import QueryBus
from ordersys.unit_of_work import run_together

if TYPE_CHECKING:
    from ordersys.application import Application

logger = logging.getLogger("ordersys.transport")

ERROR_HEADER = "x-ordersys-error"
"""Why a dead letter is one."""


@dataclass(frozen=True)
class Envelope:
    """A message on the wire: its type, its JSON body and its headers
    (correlation id, message id, trace context)."""

    message_type: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def new(cls, message_type: str, body: dict[str, Any], **headers: str) -> Envelope:
        """A new envelope; inside a handler it carries on the correlation id and
        trace context of the message being handled."""
        # The current span, if any, is the parent of whatever handles this.
        for key, value in [*current_carrier().items(), *_handling.get().items()]:
            headers.setdefault(key, value)
        headers.setdefault("message_id", str(uuid.uuid4()))
        headers.setdefault("correlation_id", headers["message_id"])
        return cls(message_type, body, headers)


PROPAGATED = ("correlation_id", "traceparent", "tracestate")
"""Headers that follow a unit of work from message to message (W3C trace context)."""

_handling: ContextVar[dict[str, str]] = ContextVar("ordersys_handling", default={})  # noqa: B039


@contextmanager
def handling(envelope: Envelope) -> Iterator[None]:
    """Handle ``envelope`` in its context: messages sent meanwhile carry on its
    correlation id and trace context, and log lines name them."""
    carried = {k: envelope.headers[k] for k in PROPAGATED if k in envelope.headers}
    token = _handling.set(carried)
    correlation_id = carried.get("correlation_id", "")
    try:
        with (
            span(
                f"handle {envelope.message_type}",
                carried,
                kind=SpanKind.SERVER,
                correlation_id=correlation_id,
            ) as current,
            log_context(
                message_type=envelope.message_type,
                correlation_id=correlation_id,
                **trace_fields(current),
                **_order_of(envelope),
            ),
        ):
            yield
    finally:
        _handling.reset(token)


def _order_of(envelope: Envelope) -> dict[str, str]:
    """``{"order_id": ...}`` when the message is about an order, for log lines."""
    order_id = (
        envelope.body.get("order_id") if isinstance(envelope.body, dict) else None
    )
    if order_id is None and envelope.message_type.startswith("Order"):
        order_id = envelope.body.get("originator_id")
    return {"order_id": str(order_id)} if order_id else {}


RequestHandler = Callable[[Envelope], Any]
EventHandler = Callable[[Envelope], None]


def reply_from(handler: RequestHandler, envelope: Envelope) -> dict[str, Any]:
    """Run ``handler`` and turn its outcome into a reply body."""
    return reply_of(outcome_of(handler, envelope))


def outcome_of(handler: RequestHandler, envelope: Envelope) -> Any | OrdersysError:
    """What ``handler`` returns for ``envelope``, or the error it raised as a
    typed value (an unexpected one logged, and wrapped)."""
    try:
        with handling(envelope):
            return handler(envelope)
    except OrdersysError as e:
        return e
    except Exception as e:
        logger.exception("%s failed", envelope.message_type)
        return OrdersysError(f"{envelope.message_type} failed: {e}")


def reply_of(outcome: Any | OrdersysError) -> dict[str, Any]:
    """A reply body for what :func:`outcome_of` gave."""
    if isinstance(outcome, OrdersysError):
        return {"error": outcome.to_dict()}
    return {"result": to_jsonable_python(outcome)}


def replies_from(
    handler: RequestHandler, envelopes: Sequence[Envelope]
) -> list[dict[str, Any]]:
    """A reply body for each of ``envelopes``, in their order: together, when
    ``handler`` can answer several requests at once (a ``many`` method, as
    :class:`BusRequests` has), else one at a time."""
    many: Callable[[Sequence[Envelope]], list[dict[str, Any]]] | None = getattr(
        handler, "many", None
    )
    if many is not None and len(envelopes) > 1:
        return many(envelopes)
    return [reply_from(handler, envelope) for envelope in envelopes]


def answered_here(
    handlers: Mapping[str, RequestHandler], requests: Sequence[tuple[str, Envelope]]
) -> dict[int, Any | OrdersysError]:
    """The outcome of each of ``requests`` (by its index) to a service that
    ``handlers`` serves in this process, each service's requests answered
    together (see :func:`replies_from`)."""
    groups: dict[str, list[int]] = {}
    for n, (service, _) in enumerate(requests):
        if service in handlers:
            groups.setdefault(service, []).append(n)
    outcomes: dict[int, Any | OrdersysError] = {}
    for service, indexes in groups.items():
        replies = replies_from(handlers[service], [requests[n][1] for n in indexes])
        for n, reply in zip(indexes, replies, strict=True):
            try:
                outcomes[n] = result_of(reply)
            except OrdersysError as e:
                outcomes[n] = e
    return outcomes


def result_of(reply: dict[str, Any]) -> Any:
    """The result in a reply body, or its error raised as the typed exception."""
    if reply.get("error") is not None:
        raise error_from_dict(reply["error"])
    return reply.get("result")


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: words split by dots, ``*`` one word, ``#`` any."""
    return _words_match(pattern.split("."), routing_key.split("."))


def _words_match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    if pattern[0] == "#":
        return _words_match(pattern[1:], words) or (
            bool(words) and _words_match(pattern, words[1:])
        )
    if not words or pattern[0] not in ("*", words[0]):
        return False
    return _words_match(pattern[1:], words[1:])


@dataclass(frozen=True)
class Broker:
    """The AMQP broker a transport's events go through, and the topic exchange
    they are published to there."""

    url: str
    events_exchange: str


class Transport(ABC):
    """The bus-transport port."""

    address: str = "this process"
    """Where the transport reaches services, as an error may show it."""

    def is_served(self, service: str) -> bool:  # noqa: ARG002 (the interface's)
        """Whether anything answers ``service``'s requests now, asked without
        a request (so without waiting for a reply). The default, for a
        transport that cannot tell, says yes: a caller then waits as usual."""
        return True

    def broker(self) -> Broker | None:
        """The broker a relay should publish this transport's events to itself,
        with publisher confirms; None (the default, a transport in this
        process) when it publishes through :meth:`publish`."""
        return None

    @abstractmethod
    def call(self, service: str, envelope: Envelope, timeout: float) -> Any:
        """Send a request to ``service`` and return the reply's result; raise
        the typed error it replied with, or :class:`RequestTimeout`."""

    def call_many(
        self,
        requests: Sequence[tuple[str, Envelope]],
        timeout: float,
        *,
        commands: bool = False,  # noqa: ARG002 (for the transports that use it)
    ) -> list[Any | OrdersysError]:
        """Send each ``(service, envelope)`` request and return, in their
        order, each reply's result or its error as a value: the typed error
        it replied with, :class:`RequestTimeout` when no reply came within
        ``timeout`` of its sending, :class:`InfrastructureUnavailable` when
        the broker cannot be reached. Other exceptions (a bug) are raised.
        The default calls them one after the other; a transport over a broker
        sends them all at once and waits for their replies together. With
        ``commands`` (the requests are commands, none a query), a transport
        may send a service's requests as one message, which that service
        answers in order, together (see :func:`replies_from`)."""
        outcomes: list[Any | OrdersysError] = []
        for service, envelope in requests:
            try:
                outcomes.append(self.call(service, envelope, timeout))
            except OrdersysError as e:
                outcomes.append(e)
        return outcomes

    @abstractmethod
    def serve(self, service: str, handler: RequestHandler) -> None:
        """Answer requests to ``service`` with ``handler`` (in the background).
        A transport may answer those that ``handler`` lets it (see
        :func:`answers_concurrently`) concurrently, bounded; the others one at
        a time, in the order they came. A request whose caller gave up may be
        dropped."""

    @abstractmethod
    def publish(self, routing_key: str, envelope: Envelope) -> None:
        """Hand an event to every queue bound to a pattern matching ``routing_key``."""

    @abstractmethod
    def subscribe(
        self, queue: str, patterns: Sequence[str], handler: EventHandler
    ) -> None:
        """Consume ``queue``, bound to ``patterns``, with ``handler`` (in the
        background). A handler that raises leaves the event unacknowledged."""

    @abstractmethod
    def close(self) -> None:
        """Stop consuming and release connections."""


def ping_type(service: str) -> str:
    """The cheap request every served service answers (no handler, no
    database): a caller that gets its reply in time knows it is answering."""
    return f"{service}.ping"


def answers_concurrently(handler: RequestHandler, message_type: str) -> bool:
    """Whether ``handler`` lets requests of ``message_type`` be answered
    concurrently with others (they change nothing: queries). A handler says
    so with a ``concurrent`` attribute, the message types it may answer so
    (:func:`serve_bus`'s handler has one: its query buses' types); any other
    handler is answered one request at a time, in order."""
    concurrent: Container[str] | None = getattr(handler, "concurrent", None)
    return concurrent is not None and message_type in concurrent


class BusRequests:
    """A request handler that dispatches each request on the bus that handles
    it, and answers :func:`ping_type` itself, at once. ``concurrent`` is the
    query buses' message types, looked up live (see :func:`answers_concurrently`).

    Several commands in hand at once are run by :meth:`many` in one unit of
    work of ``applications`` (see :mod:`ordersys.unit_of_work`): what they
    write is recorded in one transaction per application."""

    def __init__(
        self,
        service: str,
        buses: Sequence[MessageBus[Any]],
        applications: Sequence[Application] = (),
    ) -> None:
        self.service = service
        self.buses = tuple(buses)
        self.applications = tuple(applications)
        self.ping = ping_type(service)
        self.concurrent = _Types(
            tuple(b for b in self.buses if isinstance(b, QueryBus))
        )
        self.batches: CounterOf[str] = CounterOf()
        """Batches run together (``together``), and those that could not be
        recorded and were run again one command at a time (``apart``)."""

    def many(self, envelopes: Sequence[Envelope]) -> list[dict[str, Any]]:
        """A reply for each of ``envelopes``: commands run together, in their
        order, then their replies once their writes are recorded; run again
        one at a time if that fails. Queries among them, and a service
        without applications, are answered one at a time."""
        if not self.applications or any(
            e.message_type in self.concurrent or e.message_type == self.ping
            for e in envelopes
        ):
            return [reply_from(self, envelope) for envelope in envelopes]
        ran = run_together(
            self.applications,
            [partial(outcome_of, self, envelope) for envelope in envelopes],
        )
        if ran is None:
            self.batches["apart"] += 1
            logger.info(
                "%s: a batch of %d commands could not be recorded together; "
                "running them one at a time",
                self.service,
                len(envelopes),
            )
            return [reply_from(self, envelope) for envelope in envelopes]
        self.batches["together"] += 1
        outcomes, resolve = ran
        return [reply_of(resolve(outcome)) for outcome in outcomes]

    def __call__(self, envelope: Envelope) -> Any:
        if envelope.message_type == self.ping:
            return {"service": self.service}
        for bus in self.buses:
            message_class = bus.message_types.get(envelope.message_type)
            if message_class is not None:
                return bus.dispatch(message_class.parse(envelope.body))
        raise HandlerNotFound(
            f"{self.service} does not handle {envelope.message_type}",
            message_type=envelope.message_type,
        )


@dataclass(frozen=True)
class _Types:
    """The message types some buses handle, as they are when asked."""

    buses: Sequence[MessageBus[Any]]

    def __contains__(self, message_type: object) -> bool:
        return any(message_type in bus.message_types for bus in self.buses)


def serve_bus(
    transport: Transport,
    service: str,
    *buses: MessageBus[Any],
    applications: Sequence[Application] = (),
) -> None:
    """Answer ``service``'s requests by dispatching each on the bus that handles it
    (typically its command bus and its query bus). It also answers
    :func:`ping_type` itself, at once, whatever the buses handle. A transport
    may answer the queries (what a :class:`~ordersys.queries.QueryBus`
    handles) concurrently; the rest one at a time, in order, or, given the
    ``applications`` the commands write to, several commands it has in hand
    at once together, in one transaction (see :meth:`BusRequests.many`)."""
    transport.serve(service, BusRequests(service, buses, applications))


def route(message_type: str, routes: Mapping[str, str]) -> str:
    """The service that handles ``message_type``: the one ``routes`` names for
    the first word of the type (``product.reserveInventory`` →
    ``routes["product"]``), else the service named by that word itself."""
    word = message_type.split(".", 1)[0]
    return routes.get(word, word)


class RpcSender:
    """A :class:`~ordersys.processes.CommandSender` over a transport. A command
    goes to the service :func:`route` finds for it in ``routes``."""

    def __init__(
        self,
        transport: Transport,
        timeout: float = 5.0,
        routes: Mapping[str, str] | None = None,
    ) -> None:
        self.transport = transport
        self.timeout = timeout
        self.routes = dict(routes or {})

    def service_for(self, message_type: str) -> str:
        return route(message_type, self.routes)

    def send(
        self, command_type: str, payload: dict[str, Any], command_id: uuid.UUID
    ) -> Any:
        envelope = Envelope.new(command_type, payload, message_id=str(command_id))
        return self.transport.call(
            self.service_for(command_type), envelope, self.timeout
        )

    def send_many(
        self,
        batch: Sequence[tuple[str, dict[str, Any], uuid.UUID]],
        traces: Sequence[Mapping[str, str]] | None = None,
    ) -> list[Any | OrdersysError]:
        """Send each ``(command_type, payload, command_id)`` as :meth:`send`
        does, all at once, each in its trace context of ``traces`` if given;
        returns, in their order, each reply's result or its error as a value
        (see :meth:`Transport.call_many`)."""
        requests = [
            (
                self.service_for(command_type),
                Envelope.new(
                    command_type,
                    payload,
                    message_id=str(command_id),
                    **(traces[n] if traces else {}),
                ),
            )
            for n, (command_type, payload, command_id) in enumerate(batch)
        ]
        return self.transport.call_many(requests, self.timeout, commands=True)
