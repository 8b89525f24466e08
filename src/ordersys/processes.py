"""Process managers (sagas) with durable state, commands and deadlines.

A saga is an aggregate: its state changes are events, so it survives any
crash; each handling of a saga (a start, its replies in a batch, a deadline)
is recorded as one event listing its changes. A :class:`ProcessManager` is an
``eventsourcing`` event-sourced projection: it reacts to other applications'
events by changing sagas, and records those changes together with the
position of the event that caused them, atomically. Nothing is missed or
handled twice after a restart.

Sagas do not call other services. They record *commands to issue*
(``CommandIssued`` changes); the :class:`ProcessRunner` sends them through a
:class:`CommandSender`, a batch at a time, and records the replies in the
sagas, again atomically with its position in the manager's own sequence. A
crash between sending and recording resends the command with the same
command id, so receivers must be idempotent (a natural key such as an order
id does it).

A saga can set a *deadline*: if it is still pending when it falls due, the
runner fires it (``on_deadline``), whether or not any event ever arrives.
Deadlines are saga events too, so they survive restarts.

Several runners of one manager (a service's replicas) share its sagas by
partitions (:mod:`ordersys.partitions`): each handles the sagas of the
partitions it owns, and keeps a position per partition, so that whoever
takes a partition over resumes where it stood.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as CounterOf
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, cast
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import ProcessingEvent
from eventsourcing.domain import (
    AggregateCreated,
    BaseAggregate,
    CanMutateAggregate,
    DomainEventProtocol,
    MutableOrImmutableAggregate,
    decorated_funcs,
)
from eventsourcing.persistence import (
    Notification,
    RecordConflictError,
    Recording,
    Tracking,
)
from eventsourcing.projection import EventSourcedProjection
from pydantic_core import to_jsonable_python

from ordersys.aggregates import Aggregate, event
from ordersys.application import Application, VersionConflict
from ordersys.clock import now as clock_now
from ordersys.commands import Command, CommandBus
from ordersys.errors import (
    Conflict,
    HandlerNotFound,
    InfrastructureUnavailable,
    InvalidInput,
    OrdersysError,
    RequestTimeout,
    error_from_dict,
)
from ordersys.observability.tracing import (
    TRACE_FIELD,
    carrier_of,
    current_carrier,
    span,
    stamp,
)
from ordersys.outages import Outages, server_of
from ordersys.partitions import (
    REBALANCE_SECONDS,
    Ownership,
    ownership_for,
    partition_of,
)

logger = logging.getLogger("ordersys.processes")

S = TypeVar("S", bound="Saga")
Clock = Callable[[], datetime]

_new_object = object.__new__
_set_attribute = object.__setattr__


def utc_now() -> datetime:
    """Now by ordersys' clock, the one that also stamps events, so a test's
    virtual clock drives deadlines and event timestamps together."""
    return clock_now()


def saga_id(saga_type: type[Saga], key: object) -> UUID:
    """The id of the ``saga_type`` saga for ``key`` (e.g. an order id)."""
    return uuid5(NAMESPACE_URL, f"ordersys:saga:{saga_type.__qualname__}:{key}")


_CHANGE_CLASSES: dict[type[Saga], dict[str, type[Any]]] = {}


def _change_classes(saga_class: type[Saga]) -> dict[str, type[Any]]:
    """The event classes a saga's changes are named by: each event class on
    the saga class or a base, by its name, the one its ``@event`` method
    triggers first (the library copies a base's event classes into each
    subclass, and only the original calls the method)."""
    found = _CHANGE_CLASSES.get(saga_class)
    if found is None:
        found = {}
        for klass in reversed(saga_class.__mro__):
            for name, value in vars(klass).items():
                if (
                    isinstance(value, type)
                    and issubclass(value, CanMutateAggregate)
                    and (name not in found or value in decorated_funcs)
                ):
                    found[name] = value
        _CHANGE_CLASSES[saga_class] = found
    return found


def _built(event_class: type[Any], state: dict[str, Any]) -> Any:
    """An event of ``state``, made as the library makes stored events (not
    validated again)."""
    built = _new_object(event_class)
    _set_attribute(built, "__dict__", state)
    return built


def _as_event(
    event_class: type[Any],
    originator_id: UUID,
    version: int,
    timestamp: datetime,
    change: dict[str, Any],
) -> Any:
    """The event a change of a saga's step would have been on its own."""
    return _built(
        event_class,
        {
            **change["fields"],
            "originator_id": originator_id,
            "originator_version": version,
            "timestamp": timestamp,
        },
    )


def _change_event(
    event_class: type[Any],
    domain_event: Any,
    change: dict[str, Any],
    trace: dict[str, str] | None,
) -> Any:
    """A change that the saga's ``domain_event`` lists, as its own event, in
    the trace of ``domain_event``."""
    replayed = _as_event(
        event_class,
        domain_event.originator_id,
        domain_event.originator_version,
        domain_event.timestamp,
        change,
    )
    if trace is not None:
        _set_attribute(replayed, TRACE_FIELD, trace)
    return replayed


def _check(change: str, field: str, value: object, kind: type[Any]) -> None:
    """What validating the ``change`` event's ``field`` would check of a
    value a saga's caller gave (the base makes the others' values itself)."""
    if not isinstance(value, kind):
        message = f"Input should be a valid {kind.__name__}"
        raise InvalidInput(
            f"invalid {change}: {field}: {message}",
            fields=[{"field": field, "message": message}],
        )


class Saga(Aggregate):
    """The durable state of one process instance, identified by its ``key``
    (what correlates it: an order id, say).

    Subclasses add their own state and events, and override :meth:`on_reply`
    and :meth:`on_deadline`; they do not override ``__init__`` (set up their
    state in a later event instead). Those hooks, and the methods a process
    manager calls, use :meth:`issue`, :meth:`set_deadline`,
    :meth:`cancel_deadline`, :meth:`complete` and :meth:`fail`.

    Each handling (a start, the replies to this saga in one batch, a deadline
    falling due) is recorded as *one* event, however many changes it made:
    the changes the saga's methods make (its own ``@event`` methods'
    included) are applied at once and gathered, and collecting the saga's
    events turns them into a :class:`Stepped` event, or into its ``Started``
    event while that is not yet recorded. Replaying that event applies the
    same changes in the same order.
    """

    class CommandIssued(Aggregate.Event):
        command_id: UUID
        message_type: str
        payload: dict[str, Any]

    class ReplyReceived(Aggregate.Event):
        command_id: UUID
        result: Any
        error: dict[str, Any] | None

    class DeadlineSet(Aggregate.Event):
        name: str
        due: datetime

    class DeadlineCancelled(Aggregate.Event):
        name: str

    class DeadlineFired(Aggregate.Event):
        name: str

    class Finished(Aggregate.Event):
        status: str
        reason: str

    class Stepped(Aggregate.Event):
        """One handling of the saga: each change it made, in order, as
        ``{"event": <the change's event class name>, "fields": {...}}``."""

        changes: list[dict[str, Any]]

        def apply(self, aggregate: Any) -> None:
            aggregate._replay(self.changes, self.originator_version, self.timestamp)

    @classmethod
    def create_id(cls, key: str) -> UUID:
        return saga_id(cls, key)

    @event("Started")
    def __init__(self, key: str, changes: list[dict[str, Any]] | None = None) -> None:
        self.key = key
        self.awaiting: dict[str, str] = {}
        self.deadlines: dict[str, datetime] = {}
        self.status = "running"
        self.reason = ""
        self._changes: list[dict[str, Any]] | None = None
        self._changed_at = self.created_on
        if changes:
            self._replay(changes, self.version, self.created_on)

    @property
    def is_finished(self) -> bool:
        return self.status != "running"

    @property
    def now(self) -> datetime:
        """The time of the handling under way, which its event records: a
        deadline set from it is the one the saga's history shows."""
        self._open()
        return self._changed_at

    def trigger_event(
        self, event_class: type[CanMutateAggregate[UUID]], **kwargs: Any
    ) -> None:
        # A change is validated and applied as it happens, and kept for the
        # handling's one event.
        changes = self._open()
        change = cast(Any, event_class)(
            originator_id=self.id,
            originator_version=self.version + 1,
            timestamp=self._changed_at,
            **kwargs,
        )
        change.apply(self)
        changes.append({"event": event_class.__name__, "fields": kwargs})

    def _change(self, event_class: type[Any], **fields: Any) -> None:
        """A change of the base's own: its method applied to the fields the
        base made and checked itself, without building (and validating) the
        event that :meth:`trigger_event` builds for a subclass's changes."""
        changes = self._open()
        decorated_funcs[event_class](self, **fields)
        changes.append({"event": event_class.__name__, "fields": fields})

    def collect_events(self) -> Sequence[CanMutateAggregate[UUID]]:
        self._close()
        return super().collect_events()

    def _open(self) -> list[dict[str, Any]]:
        if self._changes is None:
            self._changes = []
            if not self._unrecorded_start():
                self._changed_at = clock_now()
        return self._changes

    def _unrecorded_start(self) -> AggregateCreated | None:
        pending = self._pending_events
        if self.version == 1 and len(pending) == 1:
            start = pending[0]
            if isinstance(start, AggregateCreated):
                return start
        return None

    def _close(self) -> None:
        changes, self._changes = self._changes, None
        if not changes:
            return
        # The changes were validated as they were made: the event that lists
        # them is built as stored events are, without validating them again.
        start = self._unrecorded_start()
        if start is not None:
            self._pending_events[0] = _built(
                type(start), {**start.__dict__, "changes": changes}
            )
            return
        version = self.version + 1
        stepped = _built(
            self.Stepped,
            {
                "originator_id": self.id,
                "originator_version": version,
                "timestamp": self._changed_at,
                "changes": changes,
            },
        )
        # Its changes are applied already: only the version moves on.
        self.version = version
        self.modified_on = self._changed_at
        self._pending_events.append(stepped)

    def _replay(
        self, changes: list[dict[str, Any]], version: int, timestamp: datetime
    ) -> None:
        for change in changes:
            name = change["event"]
            change_class = _change_classes(type(self)).get(name)
            if change_class is None:
                msg = f"{type(self).__qualname__} has no event {name!r} to replay"
                raise TypeError(msg)
            _as_event(change_class, self.id, version, timestamp, change).apply(self)

    @classmethod
    def history_of(cls, domain_event: Any) -> list[Any]:
        """What a stored saga event records, as the events of the base
        class's changes one by one (a ``CommandIssued``, a ``ReplyReceived``,
        a ``DeadlineSet``...), in order, after the ``Started`` event itself;
        a subclass's own changes are left out. Any other event (one recorded
        before sagas recorded a step as one event, say) is its own history."""
        changes = getattr(domain_event, "changes", None)
        if not changes or not isinstance(
            domain_event, (Saga.Stepped, AggregateCreated)
        ):
            return [domain_event]
        history = [] if isinstance(domain_event, Saga.Stepped) else [domain_event]
        base = _change_classes(Saga)
        trace = carrier_of(domain_event)
        for change in changes:
            change_class = base.get(change["event"])
            if change_class is None:
                continue
            history.append(_change_event(change_class, domain_event, change, trace))
        return history

    def issue(self, command: Command) -> UUID:
        """Record ``command`` to be sent; returns its command id."""
        return self.reissue(command.message_type, command.model_dump(mode="json"))

    def reissue(self, message_type: str, payload: dict[str, Any]) -> UUID:
        """Record a command to be sent from its wire form (an operator's retry
        of one that failed, say); returns its command id."""
        _check("CommandIssued", "message_type", message_type, str)
        _check("CommandIssued", "payload", payload, dict)
        changes = self._open()
        command_id = uuid5(self.id, f"command:{self.version + 1}:{len(changes)}")
        self._change(
            Saga.CommandIssued,
            command_id=command_id,
            message_type=message_type,
            payload=payload,
        )
        return command_id

    # The payload is kept in the event, for the dispatcher; state needs only the type.
    @event(CommandIssued)
    def _command_issued(
        self,
        command_id: UUID,
        message_type: str,
        payload: dict[str, Any],  # noqa: ARG002
    ) -> None:
        self.awaiting[str(command_id)] = message_type

    def receive_reply(
        self, command_id: UUID, result: Any, error: dict[str, Any] | None
    ) -> None:
        """Record the reply to a command issued earlier, then react to it.
        A reply to a command no longer awaited (a duplicate) changes nothing."""
        message_type = self.awaiting.get(str(command_id))
        if message_type is None:
            return
        self._change(
            Saga.ReplyReceived, command_id=command_id, result=result, error=error
        )
        typed_error = None if error is None else error_from_dict(error)
        self.on_reply(message_type, result, typed_error)

    # The reply is kept in the event, as history; state needs only the command id.
    @event(ReplyReceived)
    def _reply_received(
        self,
        command_id: UUID,
        result: Any,  # noqa: ARG002
        error: dict[str, Any] | None,  # noqa: ARG002
    ) -> None:
        self.awaiting.pop(str(command_id), None)

    def set_deadline(self, name: str, due: datetime) -> None:
        """Fire :meth:`on_deadline` with ``name`` at ``due`` unless cancelled first."""
        _check("DeadlineSet", "name", name, str)
        _check("DeadlineSet", "due", due, datetime)
        self._change(Saga.DeadlineSet, name=name, due=due)

    @event(DeadlineSet)
    def _deadline_set(self, name: str, due: datetime) -> None:
        self.deadlines[name] = due

    def cancel_deadline(self, name: str) -> None:
        if name in self.deadlines:
            self._change(Saga.DeadlineCancelled, name=name)

    @event(DeadlineCancelled)
    def _deadline_cancelled(self, name: str) -> None:
        del self.deadlines[name]

    def fire_deadline(self, name: str, now: datetime) -> bool:
        """Fire ``name`` if it is pending and due; True if it fired."""
        due = self.deadlines.get(name)
        if due is None or due > now:
            return False
        self._change(Saga.DeadlineFired, name=name)
        self.on_deadline(name)
        return True

    @event(DeadlineFired)
    def _deadline_fired(self, name: str) -> None:
        del self.deadlines[name]

    def complete(self) -> None:
        """Finish successfully; pending deadlines are dropped."""
        self._change(Saga.Finished, status="completed", reason="")

    def fail(self, reason: str) -> None:
        """Finish unsuccessfully, saying why; pending deadlines are dropped."""
        _check("Finished", "reason", reason, str)
        self._change(Saga.Finished, status="failed", reason=reason)

    @event(Finished)
    def _finished(self, status: str, reason: str) -> None:
        self.status = status
        self.reason = reason
        self.deadlines.clear()

    def on_reply(
        self, message_type: str, result: Any, error: OrdersysError | None
    ) -> None:
        """React to the reply to a command of ``message_type`` (override)."""

    def on_deadline(self, name: str) -> None:
        """React to the deadline ``name`` falling due (override)."""


class Parked(Aggregate):
    """An upstream event a process manager could not handle, or a command it
    could not send (``command``, its id), kept with the reason so that one
    bad event never stops every other saga."""

    @classmethod
    def create_id(cls, application: str, position: int, command: str = "") -> UUID:
        where = f"{application}:{position}" + (f":{command}" if command else "")
        return uuid5(NAMESPACE_URL, f"ordersys:parked:{where}")

    @event("Parked")
    def __init__(
        self, application: str, position: int, error: str, command: str = ""
    ) -> None:
        self.application = application
        self.position = position
        self.error = error
        self.command = command


Outcome = Any
"""A command's result, or the exception it failed with, as a value."""

Batch = Sequence[tuple[str, dict[str, Any], UUID]]
"""Commands to send: message type, payload, command id."""

Traces = Sequence[Mapping[str, str]]
"""The trace context each command of a batch is sent in (W3C headers), so
that what it causes joins the trace of the saga step that issued it."""


class CommandSender(Protocol):
    """Sends a command to whoever handles it and returns the reply's result,
    or raises the handler's typed error. ``command_id`` is stable across
    resends, for receivers that deduplicate.

    A sender may also have ``send_many(batch)`` (:class:`BatchSender`), which
    the runner then sends each round's commands with."""

    def send(
        self, command_type: str, payload: dict[str, Any], command_id: UUID
    ) -> Any: ...


class BatchSender(CommandSender, Protocol):
    """A :class:`CommandSender` that sends a whole batch at once and waits
    for the replies together: each command's result, or its error as a value
    (a typed refusal, :class:`~ordersys.errors.RequestTimeout` when no reply
    came in time, :class:`~ordersys.errors.InfrastructureUnavailable` when
    the broker cannot be reached), in the batch's order."""

    def send_many(
        self, batch: Batch, traces: Traces | None = None
    ) -> list[Any | OrdersysError]: ...


def send_batch(
    sender: CommandSender, batch: Batch, traces: Traces | None = None
) -> list[Outcome]:
    """Each command's outcome: with the sender's ``send_many`` if it has one,
    else one ``send`` after the other (each in its trace). An exception the
    sender raises is the outcome of every command it was sending."""
    if not batch:
        return []
    many = getattr(sender, "send_many", None)
    if many is not None:
        try:
            return list(many(batch, traces))
        except Exception as e:
            return [e] * len(batch)
    outcomes: list[Outcome] = []
    for n, (command_type, payload, command_id) in enumerate(batch):
        try:
            with span(f"send {command_type}", traces[n] if traces else None):
                outcomes.append(sender.send(command_type, payload, command_id))
        except Exception as e:
            outcomes.append(e)
    return outcomes


class BusSender:
    """A :class:`CommandSender` that dispatches on an in-process command bus."""

    def __init__(self, bus: CommandBus) -> None:
        self.bus = bus

    def send(
        self,
        command_type: str,
        payload: dict[str, Any],
        command_id: UUID,  # noqa: ARG002 (in-process handlers are called once)
    ) -> Any:
        command_class = self.bus.message_types.get(command_type)
        if command_class is None:
            raise HandlerNotFound(f"no handler for {command_type}")
        return self.bus.dispatch(cast(Command, command_class.parse(payload)))


_INDEXED = (Saga.DeadlineSet, Saga.DeadlineCancelled, Saga.DeadlineFired, Saga.Finished)
"""The changes of a saga a runner indexes (a legacy event may be one)."""

FINISHED_KEPT = 10_000
"""How many finished sagas a runner remembers (for the console's lists)."""

SAGAS_KEPT = 10_000
"""How many sagas a process manager keeps in memory between handlings."""

EVENTS_KEPT = 10_000
"""How many of its events a process manager keeps for its runner to read."""

TRANSIENT = (InfrastructureUnavailable, RequestTimeout, Conflict)
"""Errors worth retrying: the receiver may answer differently next time."""

RECORD_ATTEMPTS = 3
"""How often replies are recorded again, on sagas read afresh, when a saga
changed under the manager's copy of it (an operator's action, say)."""


@dataclass(frozen=True)
class Reply:
    """The reply to a command a saga issued: a result or a typed error, and the
    trace context of the command. A command whose sending kept failing with an
    unexpected exception is ``parked`` instead (the reason); its saga gets no
    reply, and its deadline decides."""

    position: int
    command: Saga.CommandIssued
    result: Any
    error: dict[str, Any] | None
    trace: dict[str, str]
    parked: str = ""


def commands_in(domain_event: Any) -> list[Saga.CommandIssued]:
    """The commands a stored saga event issued, in order."""
    changes = _changes_of(domain_event)
    if changes is None:
        return [domain_event] if isinstance(domain_event, Saga.CommandIssued) else []
    trace = carrier_of(domain_event)
    return [
        _change_event(Saga.CommandIssued, domain_event, change, trace)
        for change in changes
        if change["event"] == "CommandIssued"
    ]


def _changes_of(domain_event: Any) -> list[dict[str, Any]] | None:
    """The changes a saga's event lists, or None if it is a change itself."""
    if isinstance(domain_event, (Saga.Stepped, AggregateCreated)):
        return getattr(domain_event, "changes", None)
    return None


class Handling(ProcessingEvent[UUID]):
    """eventsourcing's ``ProcessingEvent``, collecting an aggregate's events
    without first asking whether it is an event (an ``isinstance`` of a
    runtime protocol: 20 µs for each saga of a batch). A process manager
    hands its policy one of these."""

    def collect_events(
        self,
        *objs: MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None,
        **kwargs: Any,
    ) -> None:
        for obj in objs:
            if isinstance(obj, BaseAggregate):
                self.events.extend(obj.collect_events())
                self.aggregates[obj.id] = obj
            else:
                super().collect_events(obj)
        self.saved_kwargs.update(kwargs)


class NotHandledHere(Exception):
    """The upstream event being handled is for a saga of a partition this
    runner does not handle (another runner's, or one that handled it
    already): the policy stops, and nothing it did counts."""


class Claim:
    """Which partitions may be changed by the handling of one upstream event.

    The first saga the policy reads or starts decides the event's partition:
    if that partition is not ``allowed``, :class:`NotHandledHere` stops the
    policy. A handling changes sagas of that one partition only (its owner
    records them with that partition's position): a saga of another is
    refused with :class:`MixedPartitions`, which fails the event (parked after
    the runner's attempts), rather than being lost or written twice."""

    def __init__(self, partitions: int, allowed: frozenset[int]) -> None:
        self.partitions = partitions
        self.allowed = allowed
        self.partition: int | None = None

    def check(self, saga_id_: UUID) -> None:
        partition = partition_of(saga_id_, self.partitions)
        if self.partition is None:
            if partition not in self.allowed:
                raise NotHandledHere(partition)
            self.partition = partition
        elif partition != self.partition:
            msg = (
                "one upstream event changes sagas of one partition only, "
                f"not {self.partition} and {partition}"
            )
            raise MixedPartitions(msg)


class MixedPartitions(Exception):
    """A handling changed sagas of two partitions (refused while runners
    share the sagas: no one runner could record both with its position)."""


class ProcessManager(Application, EventSourcedProjection[UUID]):
    """An application of sagas that follows other applications' events.

    Subclasses implement ``policy(domain_event, processing_event)``: load or
    start sagas with :meth:`saga`, call their methods, and collect them with
    ``processing_event.collect_events(saga)``.

    The sagas it handles stay in memory (up to :data:`SAGAS_KEPT`), each as
    recorded last: the next reply needs no reading of the saga's events. A
    write that finds a saga changed by someone else (a :class:`Conflict`:
    the store checks each event's version) and any failed handling forget
    them, and they are read again. Its events recorded or read lately are
    kept too, for its runner (:meth:`events_after`).

    While its runner shares the sagas with others, a :class:`Claim` says
    whose sagas the event being handled may change (:meth:`gather`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sagas: OrderedDict[UUID, Saga] = OrderedDict()
        # The manager's events this process recorded or read lately, by
        # position: its runner reads them from here, not again from the store.
        self._events: dict[int, Any] = {}
        self._events_lock = threading.Lock()
        # Every event up to this position is known here (-1: none yet).
        self._known = -1
        # The claim of the handling under way, in the runner's thread only
        # (an operator's request reads sagas meanwhile, in its own).
        self._handling = threading.local()
        self.recordings = 0
        """How many times events were recorded here, by any writer: a runner
        that saw none since it last looked has nothing new to read."""
        super().__init__(*args, **kwargs)

    def handle(self, domain_event: Any, tracking: Tracking) -> bool:
        """Apply the policy to ``domain_event``; record what it changed with
        ``tracking``, atomically. An event that changes no saga records nothing
        (the runner records how far it got once per batch); False then."""
        processing_event = Handling(tracking=tracking)
        try:
            self.policy(domain_event, processing_event)
            if not processing_event.events:
                return False
            self._record(processing_event)
        except BaseException:
            self.forget_sagas()  # the policy may have changed some, unrecorded
            raise
        self._take_snapshots(processing_event)
        return True

    def gather(
        self,
        domain_event: Any,
        batch: ProcessingEvent[UUID],
        claim: Claim | None = None,
    ) -> bool:
        """Apply the policy to ``domain_event``, adding what it changed to
        ``batch``, for :meth:`record` to record with other events' changes.
        The sagas it changed are kept as changed: a later event of the batch
        finds them so. Whoever gathers must record the batch, or call
        :meth:`forget_sagas`.

        With a ``claim``, an event for a saga of a partition it does not
        allow changes nothing: False then."""
        processing_event = Handling()
        self._handling.claim = claim
        try:
            self.policy(domain_event, processing_event)
            if claim is not None and processing_event.events:
                # A saga made without start_saga (or saga) is checked here.
                for changed in processing_event.events:
                    claim.check(changed.originator_id)
        except NotHandledHere:
            for aggregate_id in processing_event.aggregates:
                self._sagas.pop(aggregate_id, None)
            return False
        finally:
            self._handling.claim = None
        stamp(processing_event.events)  # in the span of the event that caused them
        batch.events.extend(processing_event.events)
        for aggregate in processing_event.aggregates.values():
            batch.aggregates[aggregate.id] = aggregate
            if isinstance(aggregate, Saga):
                self._keep(aggregate)
        return True

    def record(self, batch: ProcessingEvent[UUID], tracking: Tracking) -> None:
        """Record what :meth:`gather` gathered, with ``tracking``, atomically."""
        batch.tracking = tracking
        try:
            self._record(batch)
        except BaseException:
            self.forget_sagas()
            raise
        self._take_snapshots(batch)

    def saga(self, saga_type: type[S], key: object) -> S | None:
        """The ``saga_type`` saga for ``key``, or None if it was never started."""
        try:
            found = self.load_saga(saga_id(saga_type, key))
        except OrdersysError:
            return None
        return found if isinstance(found, saga_type) else None

    def load_saga(self, saga_id_: UUID) -> Saga:
        """The saga ``saga_id_``, from memory if it is there; changes made to
        it must be recorded (or :meth:`forget_sagas` called)."""
        claim: Claim | None = getattr(self._handling, "claim", None)
        if claim is not None:
            claim.check(saga_id_)
        saga = self._sagas.get(saga_id_)
        if saga is not None:
            self._sagas.move_to_end(saga_id_)
            return saga
        loaded: Saga = self.repository.get(saga_id_)
        self._keep(loaded)
        return loaded

    def forget_sagas(self, which: Callable[[UUID], bool] | None = None) -> None:
        """Read every saga (or those whose id ``which`` is true of) again
        from the store when next needed."""
        if which is None:
            self._sagas.clear()
            return
        for forgotten in [i for i in self._sagas if which(i)]:
            del self._sagas[forgotten]

    def _keep(self, saga: Saga) -> None:
        self._sagas[saga.id] = saga
        self._sagas.move_to_end(saga.id)
        if len(self._sagas) > SAGAS_KEPT:
            self._sagas.popitem(last=False)

    def start_saga(self, saga_type: type[S], key: object) -> S:
        """A new saga for ``key`` (its id is derived from the key)."""
        claim: Claim | None = getattr(self._handling, "claim", None)
        if claim is not None:
            claim.check(saga_type.create_id(str(key)))
        return saga_type(key=str(key))

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        try:
            recordings = super()._record(processing_event)
            # Known before the recording is counted: whoever sees the count
            # change finds them.
            self._keep_events(
                [
                    (r.notification.id, r.domain_event)
                    for r in recordings
                    if r.notification.id is not None
                ]
            )
        except RecordConflictError as e:
            self.forget_sagas()
            if isinstance(e, Conflict):
                raise
            # A saga written by someone else since it was read, or started twice.
            raise VersionConflict(
                "a saga was changed by someone else; read it again and retry"
            ) from e
        finally:
            self.recordings += 1
        for aggregate in processing_event.aggregates.values():
            if isinstance(aggregate, Saga):
                self._keep(aggregate)  # as recorded: the next handling starts here
        return recordings

    def events_after(
        self, start: int, limit: int
    ) -> tuple[list[tuple[int, Any]], bool]:
        """Up to ``limit`` of the manager's events after position ``start``,
        with their positions, and whether they were all there were.

        The events this process recorded or read are kept (bounded), and
        those that follow ``start`` without a gap are not read again; nor is
        the store asked when nothing is known after the position up to which
        every event is known (what a complete read found, and what was
        recorded here since without a gap). Anything recorded elsewhere
        meanwhile shows as a gap before the next event recorded here, and is
        read then (a read stops before a gap that a transaction still running
        may fill, so a complete read leaves nothing to fill below its end)."""
        with self._events_lock:
            kept = self._events
            found: list[tuple[int, Any]] = []
            position = start + 1
            while len(found) < limit and position in kept:
                found.append((position, kept[position]))
                position += 1
            if (
                self._known >= 0
                and (found or start >= self._known)
                and (len(found) == limit or not kept or max(kept) < position)
            ):
                complete = len(found) < limit and position > self._known
                return found, complete
        notifications = self.recorder.select_notifications(
            start=start, limit=limit, inclusive_of_start=False
        )
        read = [(n.id, self.mapper.to_domain_event(n)) for n in notifications]
        complete = len(read) < limit
        self._keep_events(
            read, head=(read[-1][0] if read else start) if complete else None
        )
        return read, complete

    def forget_events(self, upto: int | None = None) -> None:
        """Read the events up to position ``upto`` (all, if None) from the
        store when next needed."""
        with self._events_lock:
            if upto is None:
                self._events.clear()
                self._known = -1
                return
            for position in [p for p in self._events if p <= upto]:
                del self._events[position]

    def _keep_events(
        self, events: Sequence[tuple[int, Any]], head: int | None = None
    ) -> None:
        """Keep ``events``; ``head`` is the last position of a complete read."""
        with self._events_lock:
            kept = self._events
            kept.update(events)
            while len(kept) > EVENTS_KEPT:
                del kept[next(iter(kept))]
            if head is not None:
                self._known = max(self._known, head)
            elif events and events[0][0] == self._known + 1 and self._known >= 0:
                self._known = events[-1][0]

    def record_replies(self, replies: Sequence[Reply], tracking: Tracking) -> None:
        """Record the replies to commands issued earlier, in their order, and
        ``tracking``, in one transaction: one event for each saga, whatever
        number of replies it got. What a saga does on its replies stays in
        the trace of the first command they answer (the reply's ``trace``)."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                self._record_replies(replies, tracking)
            except Conflict:
                if attempt == RECORD_ATTEMPTS:
                    raise
                continue  # the sagas are read afresh, and the replies applied again
            except BaseException:
                self.forget_sagas()
                raise
            return

    def _record_replies(self, replies: Sequence[Reply], tracking: Tracking) -> None:
        sagas: dict[UUID, Saga] = {}
        traces: dict[UUID, dict[str, str]] = {}
        parked: list[Parked] = []
        for reply in replies:
            issued = reply.command
            if reply.parked:
                parked.append(
                    Parked(
                        application=self.name,
                        position=reply.position,
                        error=reply.parked,
                        command=str(issued.command_id),
                    )
                )
                continue
            saga = sagas.get(issued.originator_id)
            if saga is None:
                saga = sagas[issued.originator_id] = self.load_saga(
                    issued.originator_id
                )
                traces[saga.id] = reply.trace
            saga.receive_reply(
                issued.command_id, to_jsonable_python(reply.result), reply.error
            )
        processing_event = Handling(tracking=tracking)
        for saga in sagas.values():
            collected = len(processing_event.events)
            processing_event.collect_events(saga)
            stamp(processing_event.events[collected:], traces[saga.id])
        processing_event.collect_events(*parked)
        self._record(processing_event)

    def park(self, tracking: Tracking, error: BaseException) -> None:
        """Skip the upstream event at ``tracking``, recording why."""
        parked = Parked(
            application=tracking.application_name,
            position=tracking.notification_id,
            error=repr(error),
        )
        self._record_with(tracking, parked)

    def _record_with(self, tracking: Tracking, *aggregates: Aggregate) -> None:
        processing_event = Handling(tracking=tracking)
        processing_event.collect_events(*aggregates)
        self._record(processing_event)

    def parked(self) -> list[Parked]:
        """Every upstream event this manager has parked."""
        topic = f"{Parked.__module__}:{Parked.__qualname__}.Parked"
        notifications = self.recorder.select_notifications(
            start=None, limit=10_000, topics=[topic]
        )
        return [self.repository.get(UUID(str(n.originator_id))) for n in notifications]


class ProcessRunner:
    """Drives a :class:`ProcessManager`: follows its upstream applications,
    sends the commands its sagas issue, and fires their due deadlines.

    ``run_once()`` does one round of each and is what tests call; ``start()``
    runs rounds in a thread. An upstream event that keeps failing is parked
    after ``max_attempts``; a command that keeps failing transiently (a
    timeout, a conflict) is replied to the saga as a
    :class:`~ordersys.errors.RequestTimeout`. A server that cannot be reached
    (:func:`~ordersys.outages.server_of`) counts toward neither: ``run_once``
    raises it, and the thread waits with backoff until the server is back.

    The runner is the only writer of its manager's tracking records, so it
    keeps its positions in memory (read once, and again after a failed
    round); and it reads the manager's events only when something was
    recorded there since it last looked (:attr:`ProcessManager.recordings`):
    a round with nothing to do reads each upstream application once. The
    manager's events recorded in this process it takes from the manager's
    memory (:meth:`ProcessManager.events_after`), without reading them back.

    Sagas across replicas: the runner handles only the sagas of the
    partitions it owns (``ownership``; by default leased on PostgreSQL, every
    partition otherwise: :func:`ordersys.partitions.ownership_for`), and
    rebalances every :data:`~ordersys.partitions.REBALANCE_SECONDS`. Its
    positions are kept per partition: the tracking record ``<source>#<p>``,
    or ``<source>`` alone, which a runner owning every partition writes (one
    record for them all, as before partitions) and which is where every
    partition without a record of its own starts. A partition's sagas and
    its position are recorded in one transaction. Following an upstream
    application, the runner reads it once from the lowest of its
    partitions' positions, and an event is handled only for a partition
    that has not handled it yet (a :class:`Claim`). Only the partitions
    that changed are written: the others' positions move on in memory, and
    are written at the next rebalance (or release). A partition taken over
    is read again from the store (its sagas, the manager's events, the
    deadlines): another process wrote it meanwhile. A partition whose lease
    is lost (checked before each write) is dropped, with what the runner
    had gathered for it unwritten.
    """

    def __init__(
        self,
        manager: ProcessManager,
        upstream: Sequence[Application],
        sender: CommandSender,
        *,
        clock: Clock = utc_now,
        max_attempts: int = 5,
        batch_size: int = 100,
        ownership: Ownership | None = None,
    ) -> None:
        self.manager = manager
        self.upstream = list(upstream)
        self.sender = sender
        self.clock = clock
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self._deadlines: dict[UUID, dict[str, datetime]] = {}
        """The pending deadlines of each saga, by name."""
        self._started: dict[UUID, datetime] = {}
        self.finished: dict[UUID, tuple[str, datetime | None, datetime]] = {}
        """The latest finished sagas (bounded): status, start and end."""
        self.sagas: CounterOf[str] = CounterOf()
        """Sagas by status (running, completed, failed), from the manager's log."""
        self.on_finished: Callable[[str, float], None] | None = None
        """Called with a saga's final status and its duration in seconds."""
        self._indexed_position = 0
        self.ownership = ownership
        """The partitions this runner owns (made at the first round if None)."""
        self._made_ownership = ownership is None
        self._owned: frozenset[int] = frozenset()
        self._rebalanced_at: float | None = None
        self.takeovers = 0
        """Partitions claimed after the first round (a dead or leaving
        runner's, or ones released for this one)."""
        self.commands_sent: CounterOf[str] = CounterOf()
        """Commands sent (each send, resends too), by message type."""
        # Positions by source and partition, and what of them is stored; the
        # position of <source> alone (every partition's, where it has none).
        self._positions: dict[tuple[str, int], int] = {}
        self._stored: dict[tuple[str, int], int] = {}
        self._shared: dict[str, int] = {}
        # The manager's recordings when the dispatcher and the index last
        # read everything there was (None: there may be more to read).
        self._dispatched_at: int | None = None
        self._indexed_at: int | None = None
        self._attempts: dict[tuple[str, int], int] = {}
        self._send_attempts: dict[UUID, int] = {}
        self.outages = Outages(f"process {manager.name}")
        """The servers the runner is waiting for: an outage parks no event
        and times out no command, however long it lasts."""
        self._outage: Exception | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """One round: upstream events, commands, deadlines. Returns how much
        work was done (0 when idle); raises the outage a command met, once
        the rest of the round is done."""
        self._outage = None
        try:
            self._rebalance()
            work = sum(self._follow(app) for app in self.upstream)
            work += self._dispatch_commands()
            work += self._fire_due_deadlines()
        except BaseException:
            # What a failed write left behind is unknown: read it all again.
            self._forget_positions()
            self._dispatched_at = self._indexed_at = None
            self.manager.forget_sagas()
            self.manager.forget_events()
            raise
        finally:
            # What both of its readers have read is not needed again.
            name = self.manager.name
            dispatched = (self._positions.get((name, p), 0) for p in self._owned)
            read = min(min(dispatched, default=0), self._indexed_position)
            self.manager.forget_events(upto=read)
        if self._outage is not None:
            raise self._outage
        return work

    def run_until_idle(self, max_rounds: int = 1000) -> None:
        for _ in range(max_rounds):
            if not self.run_once():
                return

    @property
    def partitions_owned(self) -> int:
        """How many of the manager's partitions this runner owns."""
        return len(self._owned)

    @property
    def owned(self) -> frozenset[int]:
        """The partitions this runner owns."""
        return self._owned

    def _partitions(self) -> int:
        return self._ownership().partitions

    def _ownership(self) -> Ownership:
        if self.ownership is None:
            self.ownership = ownership_for(self.manager.settings, self.manager.name)
        return self.ownership

    def _rebalance(self) -> None:
        """Claim or release partitions, every REBALANCE_SECONDS; a partition
        gained or lost is forgotten here (read again when needed)."""
        ownership = self._ownership()
        now = time.monotonic()
        last = self._rebalanced_at
        if last is not None and now - last < REBALANCE_SECONDS:
            return
        self._rebalanced_at = now
        self._check()
        self._flush_positions()
        change = ownership.rebalance(self._flush_positions)
        for partition in change.lost | change.gained:
            self._forget_partition(partition)
        self._owned = ownership.owned
        if change.gained:
            if last is not None:
                self.takeovers += len(change.gained)
            logger.info(
                "%s: owns partitions %s", self.manager.name, sorted(self._owned)
            )
            # Others wrote the manager's log meanwhile: read it again.
            self._shared.clear()
            self.manager.forget_events()
            self._dispatched_at = self._indexed_at = None

    def _check(self) -> frozenset[int]:
        """The owned partitions still held (asked before each write); a lost
        one is dropped at once."""
        held = self._ownership().check()
        if held != self._owned:
            for partition in self._owned - held:
                logger.warning("%s: lost partition %s", self.manager.name, partition)
                self._forget_partition(partition)
            self._owned = held
        return held

    def _forget_partition(self, partition: int) -> None:
        for key in [k for k in self._positions if k[1] == partition]:
            del self._positions[key]
            self._stored.pop(key, None)
        count = self._partitions()
        self.manager.forget_sagas(lambda i: partition_of(i, count) == partition)

    def _forget_positions(self) -> None:
        self._positions.clear()
        self._stored.clear()
        self._shared.clear()

    def _flush_positions(self, partition: int | None = None) -> None:
        """Record the positions that moved on in memory only (of partitions
        that had nothing to write), so that a runner taking a partition over
        starts near where it stood."""
        recorder = self.manager.recorder
        for key, position in list(self._positions.items()):
            if partition is not None and key[1] != partition:
                continue
            if position > self._stored.get(key, 0) and key[1] in self._owned:
                recorder.insert_tracking(self._tracking(*key, position))
                self._stored[key] = position

    def _tracking(self, source: str, partition: int, position: int) -> Tracking:
        """The tracking record of ``partition``'s position in ``source``: its
        name says how many partitions there are, for a change of their
        number starts every partition from the position of them all."""
        return Tracking(f"{source}#{partition}/{self._partitions()}", position)

    def _position(self, source: str, partition: int) -> int:
        """How far ``partition`` has handled ``source``: its own record, or
        the one of every partition if that is further (the only one before
        partitions, and the one a runner owning them all writes)."""
        key = (source, partition)
        position = self._positions.get(key)
        if position is None:
            own = (
                self.manager.recorder.max_tracking_id(
                    self._tracking(source, partition, 0).application_name
                )
                or 0
            )
            position = max(own, self._shared_position(source))
            self._positions[key] = self._stored[key] = position
        return position

    def _shared_position(self, source: str) -> int:
        position = self._shared.get(source)
        if position is None:
            position = self._shared[source] = (
                self.manager.recorder.max_tracking_id(source) or 0
            )
        return position

    def _advance(self, source: str, partitions: frozenset[int], position: int) -> None:
        """``partitions`` have handled ``source`` up to ``position``."""
        for partition in partitions:
            if self._position(source, partition) < position:
                self._positions[source, partition] = position

    def _recorded(self, source: str, partitions: frozenset[int], position: int) -> None:
        """``partitions``' position in ``source`` was recorded (for all of
        them, a partition ahead of it stays ahead: it has its own record)."""
        for partition in partitions:
            key = (source, partition)
            self._positions[key] = max(self._positions.get(key, 0), position)
            self._stored[key] = max(self._stored.get(key, 0), position)

    def _split(
        self, originators: Sequence[UUID], held: frozenset[int]
    ) -> tuple[dict[int, list[int]], set[UUID]]:
        """The indexes of ``originators`` by partition, for the held ones;
        the ids of the others."""
        count = self._partitions()
        parts: dict[int, list[int]] = {}
        dropped: set[UUID] = set()
        for index, originator in enumerate(originators):
            partition = partition_of(originator, count)
            if partition in held:
                parts.setdefault(partition, []).append(index)
            else:
                dropped.add(originator)
        return parts, dropped

    def _follow(self, app: Application) -> int:
        """Apply the policy to a batch of ``app``'s events, then record what
        they changed and the position reached in one transaction. An event
        whose policy fails ends the batch there (what came before it is
        recorded): it is tried again next round, and parked after
        ``max_attempts``, and the batch goes on after it. A batch that meets
        a :class:`Conflict` (a saga written elsewhere meanwhile, or one that
        an event starts twice) is done again an event at a time, on sagas
        read afresh, so that the conflict is that one event's failure."""
        try:
            return self._follow_batch(app, one_by_one=False)
        except Conflict:
            return self._follow_batch(app, one_by_one=True)

    def _follow_batch(self, app: Application, *, one_by_one: bool) -> int:
        owned = self._owned
        if not owned:
            return 0
        count = self._partitions()
        positions = {p: self._position(app.name, p) for p in owned}
        notifications = app.recorder.select_notifications(
            start=min(positions.values()),
            limit=self.batch_size,
            inclusive_of_start=False,
        )
        batch = Handling()
        done: int | None = None
        for notification in notifications:
            allowed = frozenset(
                p for p, at in positions.items() if at < notification.id
            )
            # Every partition, none ahead: as a runner of its own would.
            claim = None if len(allowed) == count else Claim(count, allowed)
            try:
                if allowed:
                    self._process(app, notification, batch, claim)
                if one_by_one:
                    self._record_batch(app.name, batch, notification.id)
                    batch = Handling()
            except Exception as e:
                self._record_batch(app.name, batch, done)
                batch, done = Handling(), None
                # The failed policy may have changed sagas it did not record.
                self.manager.forget_sagas()
                if not self._failed(app.name, notification.id, e, claim):
                    return len(notifications)
                continue
            self._attempts.pop((app.name, notification.id), None)
            done = notification.id
        self._record_batch(app.name, batch, done)
        return len(notifications)

    def _record_batch(self, source: str, batch: Handling, done: int | None) -> None:
        """Record ``batch`` with the position ``done``; an event that changes
        nothing records nothing of its own, and a batch of only those records
        the position reached (after a crash those events are seen again, and
        again change nothing). Owning some partitions only, the runner
        records each partition's changes with its own position, and only
        those that changed (the others move on in memory)."""
        if done is None:
            return
        owned = self._owned
        if all(self._position(source, p) >= done for p in owned):
            return
        held = self._check()
        if len(held) == self._partitions():
            tracking = Tracking(source, done)
            if batch.events:
                self.manager.record(batch, tracking)
            else:
                self.manager.recorder.insert_tracking(tracking)
            self._recorded(source, held, done)
            return
        events = batch.events
        parts, dropped = self._split([e.originator_id for e in events], held)
        if dropped:  # a lost partition's changes are not written
            self.manager.forget_sagas(dropped.__contains__)
        for partition, indexes in parts.items():
            part = Handling()
            part.events.extend(events[i] for i in indexes)
            for i in indexes:
                saga = batch.aggregates.get(events[i].originator_id)
                if saga is not None:
                    part.aggregates[saga.id] = saga
            self.manager.record(part, self._tracking(source, partition, done))
            self._recorded(source, frozenset([partition]), done)
        self._advance(source, held, done)

    def _process(
        self,
        app: Application,
        notification: Notification,
        batch: Handling,
        claim: Claim | None = None,
    ) -> None:
        domain_event = app.mapper.to_domain_event(notification)
        # In the trace of the request that wrote the event, wherever it ran.
        with span(
            f"{self.manager.name} on {type(domain_event).__name__}",
            carrier_of(domain_event),
        ):
            self.manager.gather(domain_event, batch, claim)

    def _failed(
        self, source: str, position: int, error: Exception, claim: Claim | None
    ) -> bool:
        """Count a failure of the upstream event at ``position``; after
        ``max_attempts``, park it: True then. An outage is not the event's
        fault: it is raised, for the round to wait for the server. Owning
        some partitions only, the runner parks an event in its saga's
        partition, or, when it failed before reaching a saga, in a partition
        its position decides; an event another runner parks is skipped."""
        if server_of(error) is not None:
            raise error
        key = (source, position)
        attempts = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempts
        if attempts < self.max_attempts:
            logger.warning("%s at %s failed (attempt %s): %r", *key, attempts, error)
            return False
        self._attempts.pop(key, None)
        held = self._check()
        count = self._partitions()
        if len(held) == count:
            logger.error("%s at %s parked after %s attempts: %r", *key, attempts, error)
            self.manager.park(Tracking(source, position), error)
            self._recorded(source, held, position)
            return True
        home = claim.partition if claim is not None else None
        if home is None:
            home = partition_of(Parked.create_id(source, position), count)
        if home in held and self._position(source, home) < position:
            logger.error("%s at %s parked after %s attempts: %r", *key, attempts, error)
            self.manager.park(self._tracking(source, home, position), error)
            self._recorded(source, frozenset([home]), position)
        self._advance(source, held, position)
        return True

    def _dispatch_commands(self) -> int:
        """Send the commands of a batch of the manager's events, then record
        every reply with the batch's position in one transaction (one for
        each partition, owning some only). Only the batch up to the first
        event with a command that must be tried again is recorded; the
        commands after it, and the other commands of that event, are sent
        again later, which receivers take as they take any resend
        (idempotently). Events of partitions the runner does not own, or
        that it handled already, are passed over."""
        manager = self.manager
        recordings = manager.recordings
        if self._dispatched_at == recordings:
            return 0  # nothing recorded since everything there was was answered
        owned = self._owned
        if not owned:
            return 0
        count = self._partitions()
        positions = {p: self._position(manager.name, p) for p in owned}
        events, complete = manager.events_after(
            min(positions.values()), self.batch_size
        )
        commands: dict[int, list[Saga.CommandIssued]] = {}
        for position, domain_event in events:
            partition = partition_of(domain_event.originator_id, count)
            if positions.get(partition, position) >= position:
                continue  # another runner's, or answered already
            issued = commands_in(domain_event)
            if issued:
                commands[position] = issued
        replies = self._send_all(commands)
        done: list[int] = []
        for position, _ in events:
            if position in commands and position not in replies:
                break
            done.append(position)
        if done:
            self._record_replies(
                [reply for p in done for reply in replies.get(p, ())], done[-1]
            )
        caught_up = complete and len(done) == len(events)
        self._dispatched_at = recordings if caught_up else None
        return len(events)

    def _record_replies(self, replies: list[Reply], position: int) -> None:
        manager = self.manager
        held = self._check()
        if len(held) == self._partitions():
            manager.record_replies(replies, Tracking(manager.name, position))
            self._recorded(manager.name, held, position)
            return
        sagas = [reply.command.originator_id for reply in replies]
        parts, dropped = self._split(sagas, held)
        if dropped:  # a lost partition's replies: its new owner sends again
            manager.forget_sagas(dropped.__contains__)
        for partition, indexes in parts.items():
            tracking = self._tracking(manager.name, partition, position)
            manager.record_replies([replies[i] for i in indexes], tracking)
            self._recorded(manager.name, frozenset([partition]), position)
        self._advance(manager.name, held, position)

    def _send_all(
        self, commands: dict[int, list[Saga.CommandIssued]]
    ) -> dict[int, list[Reply]]:
        """The replies to each event's commands, by position, for the events
        whose every command has one. The commands go in waves, one batch
        each: the first event of each saga, then the second... so that one
        saga's commands are sent in order; a saga whose event must be tried
        again sends none of its later ones."""
        waves: list[list[tuple[int, list[Saga.CommandIssued]]]] = []
        depth: CounterOf[UUID] = CounterOf()
        for position, issued in commands.items():
            saga = issued[0].originator_id
            if depth[saga] == len(waves):
                waves.append([])
            waves[depth[saga]].append((position, issued))
            depth[saga] += 1
        replies: dict[int, list[Reply]] = {}
        stalled: set[UUID] = set()
        for wave in waves:
            ready = [(p, i) for p, i in wave if i[0].originator_id not in stalled]
            sending = [c for _, i in ready for c in i]
            self.commands_sent.update(c.message_type for c in sending)
            batch = [(c.message_type, c.payload, c.command_id) for c in sending]
            traces = [self._trace_of_sending(c) for c in sending]
            outcomes = iter(send_batch(self.sender, batch, traces))
            for position, issued in ready:
                answers = [self._reply(position, c, next(outcomes)) for c in issued]
                if all(a is not None for a in answers):
                    replies[position] = [a for a in answers if a is not None]
                else:
                    stalled.add(issued[0].originator_id)
        return replies

    def _trace_of_sending(self, command: Saga.CommandIssued) -> dict[str, str]:
        """A span for sending ``command``, in the trace of the step that
        issued it; the command carries it to its handler."""
        with span(
            f"{self.manager.name} sends {command.message_type}", carrier_of(command)
        ):
            return current_carrier()

    def _reply(
        self, position: int, command: Saga.CommandIssued, outcome: Outcome
    ) -> Reply | None:
        """The reply that ``outcome`` makes: the command's result, or the
        typed error it was refused with; after ``max_attempts`` transient
        failures, a :class:`RequestTimeout`, and after as many unexpected
        exceptions, the command parked. None if it should be tried again."""
        trace = carrier_of(command) or {}
        if not isinstance(outcome, Exception):
            self._send_attempts.pop(command.command_id, None)
            return Reply(position, command, outcome, None, trace)
        if isinstance(outcome, OrdersysError) and not isinstance(outcome, TRANSIENT):
            self._send_attempts.pop(command.command_id, None)
            return Reply(position, command, None, outcome.to_dict(), trace)
        if server_of(outcome) is not None:
            self._outage = outcome  # not the command's fault: sent again later
            return None
        attempts = self._send_attempts.get(command.command_id, 0) + 1
        if attempts < self.max_attempts:
            self._send_attempts[command.command_id] = attempts
            logger.warning(
                "%s: %s failed (attempt %s): %r",
                self.manager.name,
                command.message_type,
                attempts,
                outcome,
            )
            return None
        self._send_attempts.pop(command.command_id, None)
        if not isinstance(outcome, OrdersysError):
            logger.error("%s parked after %s attempts", command.message_type, attempts)
            return Reply(position, command, None, None, trace, repr(outcome))
        message = f"{command.message_type} failed {self.max_attempts} times: {outcome}"
        return Reply(position, command, None, RequestTimeout(message).to_dict(), trace)

    def _index_deadlines(self) -> None:
        manager = self.manager
        recordings = manager.recordings
        if self._indexed_at == recordings:
            return
        while True:
            events, complete = manager.events_after(self._indexed_position, 1000)
            for _, domain_event in events:
                self._index(domain_event)
            if events:
                self._indexed_position = events[-1][0]
            if complete:
                self._indexed_at = recordings
                return

    def _index(self, domain_event: Any) -> None:
        """Index what a saga's event changed of its deadlines and status,
        from the changes it lists as they are stored (without making each
        an event, as :meth:`Saga.history_of` does)."""
        saga_id_ = domain_event.originator_id
        timestamp = domain_event.timestamp
        if isinstance(domain_event, AggregateCreated) and hasattr(domain_event, "key"):
            self._started[saga_id_] = timestamp
            self.sagas["running"] += 1
        changes = _changes_of(domain_event)
        if changes is None:
            for indexed in _INDEXED:
                if isinstance(domain_event, indexed):
                    name = indexed.__name__
                    self._index_change(saga_id_, timestamp, name, domain_event.__dict__)
            return
        for change in changes:
            self._index_change(saga_id_, timestamp, change["event"], change["fields"])

    def _index_change(
        self, saga_id_: UUID, timestamp: datetime, name: str, fields: dict[str, Any]
    ) -> None:
        if name == "DeadlineSet":
            self._deadlines.setdefault(saga_id_, {})[fields["name"]] = fields["due"]
        elif name in ("DeadlineCancelled", "DeadlineFired"):
            self._drop_deadline(saga_id_, fields["name"])
        elif name == "Finished":
            self._count_finished(saga_id_, fields["status"], timestamp)
            self._deadlines.pop(saga_id_, None)

    def _drop_deadline(self, saga_id_: UUID, name: str) -> None:
        pending = self._deadlines.get(saga_id_)
        if pending is not None:
            pending.pop(name, None)
            if not pending:
                del self._deadlines[saga_id_]

    def _count_finished(self, saga_id_: UUID, status: str, ended: datetime) -> None:
        self.sagas["running"] -= 1
        self.sagas[status] += 1
        started = self._started.pop(saga_id_, None)
        self.finished[saga_id_] = (status, started, ended)
        if len(self.finished) > FINISHED_KEPT:
            self.finished.pop(next(iter(self.finished)))
        if started is not None and self.on_finished is not None:
            self.on_finished(status, (ended - started).total_seconds())

    def running(self) -> dict[UUID, datetime]:
        """The sagas still running, with the time each started."""
        return dict(self._started)

    def deadlines(self) -> dict[tuple[UUID, str], datetime]:
        """The pending deadlines, by saga id and name."""
        return {
            (saga_id_, name): due
            for saga_id_, pending in list(self._deadlines.items())
            for name, due in list(pending.items())
        }

    def overdue(self, grace: timedelta = timedelta(seconds=5)) -> int:
        """Deadlines due more than ``grace`` ago and not fired: stuck sagas
        (of the partitions owned: another runner's are its own to fire, and
        this runner may not have read their latest events)."""
        limit = self.clock() - grace
        count, owned = self._partitions(), self._owned
        return sum(
            due < limit and partition_of(saga_id_, count) in owned
            for (saga_id_, _), due in self.deadlines().items()
        )

    def _fire_due_deadlines(self) -> int:
        """Fire the due deadlines of the sagas of the partitions owned (the
        index knows every saga's)."""
        self._index_deadlines()
        now = self.clock()
        fired = 0
        count = self._partitions()
        due_now = [
            (due, key)
            for key, due in self.deadlines().items()
            if due <= now and partition_of(key[0], count) in self._owned
        ]
        for _, (saga_id_, name) in sorted(due_now):
            try:
                saga = self.manager.load_saga(saga_id_)
                if saga.fire_deadline(name, now):
                    if partition_of(saga_id_, count) not in self._check():
                        self.manager.forget_sagas(saga_id_.__eq__)
                        continue  # lost meanwhile: its new owner fires it
                    self.manager.write(saga)
                    fired += 1
            except Conflict:
                continue  # the saga changed meanwhile: look again next round
            self._drop_deadline(saga_id_, name)
        return fired

    def start(self, poll_interval: float = 0.05) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._loop,
            args=(poll_interval,),
            name=f"process-{self.manager.name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.close()

    def close(self) -> None:
        """Record the positions kept in memory, and release the partitions
        (the other runners take them over at their next rebalance)."""
        ownership = self.ownership
        if ownership is None:
            return
        try:
            self._flush_positions()
        except Exception:
            logger.exception("%s: positions not recorded", self.manager.name)
        ownership.close()
        self._owned = frozenset()
        self._rebalanced_at = None
        self._forget_positions()
        if self._made_ownership:
            self.ownership = None

    def __enter__(self) -> ProcessRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self, poll_interval: float) -> None:
        while not self._stopping.is_set():
            try:
                busy = self.outages.attempt(self.run_once, self._stopping)
                if busy is None:
                    continue  # a server was down: waited, and now tries again
            except Exception:
                logger.exception("%s: round failed", self.manager.name)
                busy = 0
            if not busy:
                self._stopping.wait(poll_interval)
