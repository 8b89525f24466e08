"""Process managers (sagas) with durable state, commands and deadlines.

A saga is an aggregate: its state changes are events, so it survives any
crash. A :class:`ProcessManager` is an ``eventsourcing`` event-sourced
projection: it reacts to other applications' events by changing sagas, and
records those changes together with the position of the event that caused
them, atomically. Nothing is missed or handled twice after a restart.

Sagas do not call other services. They record *commands to issue*
(``CommandIssued`` events); the :class:`ProcessRunner` sends them through a
:class:`CommandSender` and records the reply in the saga, again atomically with
its position in the manager's own sequence. A crash between sending and
recording resends the command with the same command id, so receivers must be
idempotent (a natural key such as an order id does it).

A saga can set a *deadline*: if it is still pending when it falls due, the
runner fires it (``on_deadline``), whether or not any event ever arrives.
Deadlines are saga events too, so they survive restarts.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter as CounterOf
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar, cast
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import ProcessingEvent
from eventsourcing.domain import AggregateCreated
from eventsourcing.persistence import Notification, Tracking
from eventsourcing.projection import EventSourcedProjection
from pydantic_core import to_jsonable_python

from ordersys.aggregates import Aggregate, event
from ordersys.application import Application
from ordersys.clock import now as clock_now
from ordersys.commands import Command, CommandBus
from ordersys.errors import (
    Conflict,
    HandlerNotFound,
    InfrastructureUnavailable,
    OrdersysError,
    RequestTimeout,
    error_from_dict,
)
from ordersys.observability.tracing import carrier_of, current_carrier, span, stamp
from ordersys.outages import Outages, server_of

logger = logging.getLogger("ordersys.processes")

S = TypeVar("S", bound="Saga")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Now by ordersys' clock, the one that also stamps events, so a test's
    virtual clock drives deadlines and event timestamps together."""
    return clock_now()


def saga_id(saga_type: type[Saga], key: object) -> UUID:
    """The id of the ``saga_type`` saga for ``key`` (e.g. an order id)."""
    return uuid5(NAMESPACE_URL, f"ordersys:saga:{saga_type.__qualname__}:{key}")


class Saga(Aggregate):
    """The durable state of one process instance, identified by its ``key``
    (what correlates it: an order id, say).

    Subclasses add their own state and events, and override :meth:`on_reply`
    and :meth:`on_deadline`; they do not override ``__init__`` (set up their
    state in a later event instead). Those hooks, and the methods a process
    manager calls, use :meth:`issue`, :meth:`set_deadline`,
    :meth:`cancel_deadline`, :meth:`complete` and :meth:`fail`.
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

    @classmethod
    def create_id(cls, key: str) -> UUID:
        return saga_id(cls, key)

    @event("Started")
    def __init__(self, key: str) -> None:
        self.key = key
        self.awaiting: dict[str, str] = {}
        self.deadlines: dict[str, datetime] = {}
        self.status = "running"
        self.reason = ""

    @property
    def is_finished(self) -> bool:
        return self.status != "running"

    def issue(self, command: Command) -> UUID:
        """Record ``command`` to be sent; returns its command id."""
        return self.reissue(command.message_type, command.model_dump(mode="json"))

    def reissue(self, message_type: str, payload: dict[str, Any]) -> UUID:
        """Record a command to be sent from its wire form (an operator's retry
        of one that failed, say); returns its command id."""
        command_id = uuid5(self.id, f"command:{self.version + 1}")
        self._command_issued(command_id, message_type, payload)
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
        self._reply_received(command_id, result, error)
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
        self._deadline_set(name, due)

    @event(DeadlineSet)
    def _deadline_set(self, name: str, due: datetime) -> None:
        self.deadlines[name] = due

    def cancel_deadline(self, name: str) -> None:
        if name in self.deadlines:
            self._deadline_cancelled(name)

    @event(DeadlineCancelled)
    def _deadline_cancelled(self, name: str) -> None:
        del self.deadlines[name]

    def fire_deadline(self, name: str, now: datetime) -> bool:
        """Fire ``name`` if it is pending and due; True if it fired."""
        due = self.deadlines.get(name)
        if due is None or due > now:
            return False
        self._deadline_fired(name)
        self.on_deadline(name)
        return True

    @event(DeadlineFired)
    def _deadline_fired(self, name: str) -> None:
        del self.deadlines[name]

    def complete(self) -> None:
        """Finish successfully; pending deadlines are dropped."""
        self._finished("completed", "")

    def fail(self, reason: str) -> None:
        """Finish unsuccessfully, saying why; pending deadlines are dropped."""
        self._finished("failed", reason)

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
    """An upstream event a process manager could not handle, kept with the
    reason so that one bad event never stops every other saga."""

    @classmethod
    def create_id(cls, application: str, position: int) -> UUID:
        return uuid5(NAMESPACE_URL, f"ordersys:parked:{application}:{position}")

    @event("Parked")
    def __init__(self, application: str, position: int, error: str) -> None:
        self.application = application
        self.position = position
        self.error = error


class CommandSender(Protocol):
    """Sends a command to whoever handles it and returns the reply's result,
    or raises the handler's typed error. ``command_id`` is stable across
    resends, for receivers that deduplicate."""

    def send(
        self, command_type: str, payload: dict[str, Any], command_id: UUID
    ) -> Any: ...


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


FINISHED_KEPT = 10_000
"""How many finished sagas a runner remembers (for the console's lists)."""

TRANSIENT = (InfrastructureUnavailable, RequestTimeout, Conflict)
"""Errors worth retrying: the receiver may answer differently next time."""


@dataclass(frozen=True)
class Reply:
    """The reply to a command a saga issued: a result or a typed error, and the
    trace context of the send. A command whose sending kept failing with an
    unexpected exception is ``parked`` instead (the reason); its saga gets no
    reply, and its deadline decides."""

    position: int
    command: Saga.CommandIssued
    result: Any
    error: dict[str, Any] | None
    trace: dict[str, str]
    parked: str = ""


class ProcessManager(Application, EventSourcedProjection[UUID]):
    """An application of sagas that follows other applications' events.

    Subclasses implement ``policy(domain_event, processing_event)``: load or
    start sagas with :meth:`saga`, call their methods, and collect them with
    ``processing_event.collect_events(saga)``.
    """

    def handle(self, domain_event: Any, tracking: Tracking) -> bool:
        """Apply the policy to ``domain_event``; record what it changed with
        ``tracking``, atomically. An event that changes no saga records nothing
        (the runner records how far it got once per batch); False then."""
        processing_event = ProcessingEvent[UUID](tracking=tracking)
        self.policy(domain_event, processing_event)
        if not processing_event.events:
            return False
        self._record(processing_event)
        self._take_snapshots(processing_event)
        return True

    def saga(self, saga_type: type[S], key: object) -> S | None:
        """The ``saga_type`` saga for ``key``, or None if it was never started."""
        try:
            return self.get(saga_type, saga_id(saga_type, key))
        except OrdersysError:
            return None

    def start_saga(self, saga_type: type[S], key: object) -> S:
        """A new saga for ``key`` (its id is derived from the key)."""
        return saga_type(key=str(key))

    def record_replies(self, replies: Sequence[Reply], tracking: Tracking) -> None:
        """Record the replies to commands issued earlier, in their order, and
        ``tracking``, in one transaction. What a saga does on a reply stays in
        the trace of the command it answers (the reply's ``trace``)."""
        sagas: dict[UUID, Saga] = {}
        events: list[Any] = []
        for reply in replies:
            issued = reply.command
            if reply.parked:
                parked = Parked(
                    application=self.name, position=reply.position, error=reply.parked
                )
                events.extend(parked.collect_events())
                continue
            saga = sagas.get(issued.originator_id)
            if saga is None:
                saga = sagas[issued.originator_id] = self.repository.get(
                    issued.originator_id
                )
            saga.receive_reply(
                issued.command_id, to_jsonable_python(reply.result), reply.error
            )
            caused = saga.collect_events()
            stamp(caused, reply.trace)
            events.extend(caused)
        processing_event = ProcessingEvent[UUID](tracking=tracking)
        processing_event.collect_events(*events)
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
        processing_event = ProcessingEvent[UUID](tracking=tracking)
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
        concurrency: int = 16,
    ) -> None:
        self.manager = manager
        self.upstream = list(upstream)
        self.sender = sender
        self.clock = clock
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self._deadlines: dict[tuple[UUID, str], datetime] = {}
        self._started: dict[UUID, datetime] = {}
        self.finished: dict[UUID, tuple[str, datetime | None, datetime]] = {}
        """The latest finished sagas (bounded): status, start and end."""
        self.sagas: CounterOf[str] = CounterOf()
        """Sagas by status (running, completed, failed), from the manager's log."""
        self.on_finished: Callable[[str, float], None] | None = None
        """Called with a saga's final status and its duration in seconds."""
        self._indexed_position = 0
        self._attempts: dict[tuple[str, int], int] = {}
        # Commands of different sagas are sent at once: a reply takes a round
        # trip to another service, and the runner would otherwise wait out each.
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="saga-send")
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
        work = sum(self._follow(app) for app in self.upstream)
        work += self._dispatch_commands()
        work += self._fire_due_deadlines()
        if self._outage is not None:
            raise self._outage
        return work

    def run_until_idle(self, max_rounds: int = 1000) -> None:
        for _ in range(max_rounds):
            if not self.run_once():
                return

    def _follow(self, app: Application) -> int:
        position = self.manager.recorder.max_tracking_id(app.name) or 0
        notifications = app.recorder.select_notifications(
            start=position, limit=self.batch_size, inclusive_of_start=False
        )
        self._each(notifications, app.name, partial(self._process, app))
        return len(notifications)

    def _each(
        self,
        notifications: Sequence[Notification],
        source: str,
        act: Callable[[Notification, Tracking], None],
    ) -> None:
        """Act on each notification in order, up to the first that fails. An
        act that changes nothing records nothing: the position reached is
        recorded once at the end, one commit instead of one per event (after a
        crash those events are seen again, and again change nothing)."""
        done = None
        for notification in notifications:
            tracking = Tracking(source, notification.id)
            if not self._attempt(tracking, partial(act, notification, tracking)):
                break
            done = tracking
        recorded = self.manager.recorder.max_tracking_id(source) or 0
        if done is not None and done.notification_id > recorded:
            self.manager.recorder.insert_tracking(done)

    def _process(
        self, app: Application, notification: Notification, tracking: Tracking
    ) -> None:
        domain_event = app.mapper.to_domain_event(notification)
        # In the trace of the request that wrote the event, wherever it ran.
        with span(
            f"{self.manager.name} on {type(domain_event).__name__}",
            carrier_of(domain_event),
        ):
            self.manager.handle(domain_event, tracking)

    def _attempt(self, tracking: Tracking, action: Callable[[], None]) -> bool:
        """Run ``action``; after ``max_attempts`` failures park the event.
        False if the action failed this time (the caller tries again later)."""
        key = (tracking.application_name, tracking.notification_id)
        try:
            action()
        except Exception as e:
            if server_of(e) is not None:
                raise  # the round waits for the server; the event is not at fault
            attempts = self._attempts.get(key, 0) + 1
            self._attempts[key] = attempts
            if attempts < self.max_attempts:
                logger.warning("%s at %s failed (attempt %s): %r", *key, attempts, e)
                return False
            logger.error("%s at %s parked after %s attempts: %r", *key, attempts, e)
            self.manager.park(tracking, e)
        self._attempts.pop(key, None)
        return True

    def _dispatch_commands(self) -> int:
        """Send the commands of a batch, those of different sagas at once (one
        saga's in order), then record every reply with the batch's position in
        one transaction. Only the batch up to the first command that must be
        tried again is recorded; the commands after it are sent again later,
        which receivers take as they take any resend (idempotently)."""
        manager = self.manager
        position = manager.recorder.max_tracking_id(manager.name) or 0
        notifications = manager.recorder.select_notifications(
            start=position, limit=self.batch_size, inclusive_of_start=False
        )
        commands: dict[int, Saga.CommandIssued] = {}
        for notification in notifications:
            domain_event = manager.mapper.to_domain_event(notification)
            if isinstance(domain_event, Saga.CommandIssued):
                commands[notification.id] = domain_event
        replies = self._send_all(commands)
        done: list[Notification] = []
        for notification in notifications:
            if notification.id in commands and notification.id not in replies:
                break
            done.append(notification)
        if done:
            manager.record_replies(
                [replies[n.id] for n in done if n.id in commands],
                Tracking(manager.name, done[-1].id),
            )
        return len(notifications)

    def _send_all(self, commands: dict[int, Saga.CommandIssued]) -> dict[int, Reply]:
        """Each command's reply (result, error), by position; a command that
        must be tried again has none, nor have the later ones of its saga."""
        by_saga: dict[UUID, list[tuple[int, Saga.CommandIssued]]] = {}
        for position, command in commands.items():
            by_saga.setdefault(command.originator_id, []).append((position, command))
        replies: dict[int, Reply] = {}
        for answered in self._pool.map(self._send_in_order, by_saga.values()):
            replies.update(answered)
        return replies

    def _send_in_order(
        self, commands: list[tuple[int, Saga.CommandIssued]]
    ) -> dict[int, Reply]:
        replies: dict[int, Reply] = {}
        for position, command in commands:
            with span(
                f"{self.manager.name} sends {command.message_type}",
                carrier_of(command),
            ):
                answer = self._send(position, command)
            if answer is None:
                break
            replies[position] = Reply(position, command, *answer)
        return replies

    def _send(
        self, position: int, command: Saga.CommandIssued
    ) -> tuple[Any, dict[str, Any] | None, dict[str, str], str] | None:
        """The reply to ``command``: its result, or the typed error it was
        refused with; after ``max_attempts`` transient failures, a
        :class:`RequestTimeout`, and after as many unexpected exceptions, the
        command parked. None if it should be tried again."""
        key = (self.manager.name, position)
        trace = current_carrier()
        try:
            result = self.sender.send(
                command.message_type, command.payload, command.command_id
            )
        except OrdersysError as e:
            if not isinstance(e, TRANSIENT):
                return None, e.to_dict(), trace, ""
            failure: Exception = e
        except Exception as e:  # a bug, or the sender itself is broken
            failure = e
        else:
            self._attempts.pop(key, None)
            return result, None, trace, ""
        if server_of(failure) is not None:
            self._outage = failure  # not the command's fault: sent again later
            return None
        attempts = self._attempts.get(key, 0) + 1
        if attempts < self.max_attempts:
            self._attempts[key] = attempts
            logger.warning(
                "%s: %s failed (attempt %s): %r",
                self.manager.name,
                command.message_type,
                attempts,
                failure,
            )
            return None
        self._attempts.pop(key, None)
        if not isinstance(failure, OrdersysError):
            logger.error("%s parked after %s attempts", command.message_type, attempts)
            return None, None, trace, repr(failure)
        message = f"{command.message_type} failed {self.max_attempts} times: {failure}"
        return None, RequestTimeout(message).to_dict(), trace, ""

    def _index_deadlines(self) -> None:
        manager = self.manager
        while True:
            notifications = manager.recorder.select_notifications(
                start=self._indexed_position, limit=1000, inclusive_of_start=False
            )
            for notification in notifications:
                self._index(manager.mapper.to_domain_event(notification))
            if not notifications:
                return
            self._indexed_position = notifications[-1].id

    def _index(self, domain_event: Any) -> None:
        if isinstance(domain_event, AggregateCreated) and hasattr(domain_event, "key"):
            self._started[domain_event.originator_id] = domain_event.timestamp
            self.sagas["running"] += 1
        elif isinstance(domain_event, Saga.DeadlineSet):
            self._deadlines[(domain_event.originator_id, domain_event.name)] = (
                domain_event.due
            )
        elif isinstance(domain_event, (Saga.DeadlineCancelled, Saga.DeadlineFired)):
            self._deadlines.pop((domain_event.originator_id, domain_event.name), None)
        elif isinstance(domain_event, Saga.Finished):
            self._count_finished(domain_event)
            for key in [
                k for k in self._deadlines if k[0] == domain_event.originator_id
            ]:
                del self._deadlines[key]

    def _count_finished(self, finished: Saga.Finished) -> None:
        self.sagas["running"] -= 1
        self.sagas[finished.status] += 1
        started = self._started.pop(finished.originator_id, None)
        self.finished[finished.originator_id] = (
            finished.status,
            started,
            finished.timestamp,
        )
        if len(self.finished) > FINISHED_KEPT:
            self.finished.pop(next(iter(self.finished)))
        if started is not None and self.on_finished is not None:
            self.on_finished(
                finished.status, (finished.timestamp - started).total_seconds()
            )

    def running(self) -> dict[UUID, datetime]:
        """The sagas still running, with the time each started."""
        return dict(self._started)

    def deadlines(self) -> dict[tuple[UUID, str], datetime]:
        """The pending deadlines, by saga id and name."""
        return dict(self._deadlines)

    def overdue(self, grace: timedelta = timedelta(seconds=5)) -> int:
        """Deadlines due more than ``grace`` ago and not fired: stuck sagas."""
        limit = self.clock() - grace
        return sum(due < limit for due in list(self._deadlines.values()))

    def _fire_due_deadlines(self) -> int:
        self._index_deadlines()
        now = self.clock()
        fired = 0
        for (saga_id_, name), due in sorted(
            self._deadlines.items(), key=lambda i: i[1]
        ):
            if due > now:
                break
            try:
                saga: Saga = self.manager.repository.get(saga_id_)
                if saga.fire_deadline(name, now):
                    self.manager.write(saga)
                    fired += 1
            except Conflict:
                continue  # the saga changed meanwhile: look again next round
            self._deadlines.pop((saga_id_, name), None)
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
