"""Operator queries and actions that any :class:`~ordersys.service.Service`
answers over the transport (``ops.*`` messages).

An operator's console has no access to each service's database; it asks the
service instead: how its parts are doing (``ops.status``), the events of some
aggregates (``ops.events``), when positions were published, applied or
handled (``ops.progress``), its sagas (``ops.sagas``), and the few actions
that are safe whatever the domain is: fire a saga's deadline now, send a
failed compensation again, rebuild, pause or resume a projection.

What an answer shows never includes a field whose name says it holds a
secret (a password hash, a token), nor a relay's private fields.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from eventsourcing.persistence import Notification
from pydantic import Field
from pydantic_core import to_jsonable_python

from ordersys.application import Application
from ordersys.bus import Next
from ordersys.commands import Command
from ordersys.errors import BusinessRuleViolation, NotFound
from ordersys.extras import loaded_class
from ordersys.messages import Message
from ordersys.observability.tracing import TRACE_FIELD
from ordersys.processes import ProcessRunner, Saga
from ordersys.projections import ProjectionRunner
from ordersys.queries import Query

if TYPE_CHECKING:
    from ordersys.service import Service

# Adapters' classes, known only if their modules are loaded (with their extras).
RELAY = ("ordersys.messaging.relay", "Relay")
CONSUMER = ("ordersys.messaging.inbox", "Inbox")
POSTGRES_RECORDER = ("eventsourcing.postgres", "PostgresApplicationRecorder")

logger = logging.getLogger("ordersys.operations")

SECRET = re.compile(r"password|secret|token|hash|credential", re.IGNORECASE)
"""Field names whose values are never shown."""
HIDDEN = "(hidden)"
OVERDUE_GRACE = timedelta(seconds=5)
_ENVELOPE = frozenset(
    (
        "originator_id",
        "originator_version",
        "originator_topic",
        "timestamp",
        TRACE_FIELD,
    )
)
"""Fields of every stored event that the console shows apart from its payload."""
SagaState = Literal["running", "completed", "failed", "overdue"]


class Status(Query):
    message_type = "ops.status"


class Events(Query):
    """The events of ``aggregate_ids`` in any of the service's applications,
    those whose ``where`` fields equal the given values."""

    message_type = "ops.events"
    aggregate_ids: list[UUID] = Field(min_length=1, max_length=100)
    where: dict[str, str] = Field(default_factory=dict)
    limit: int = Field(1000, ge=1, le=10_000)


class Progress(Query):
    """When the relays published and the projections applied the
    ``positions`` of their application (by application name), and when the
    consumers handled ``message_ids``."""

    message_type = "ops.progress"
    positions: dict[str, list[int]] = Field(default_factory=dict)
    message_ids: list[str] = Field(default_factory=list, max_length=1000)


class Sagas(Query):
    """The sagas in ``state`` started at least ``min_age_seconds`` ago,
    newest first; or the one saga ``saga_id``, with the compensations it
    could send again."""

    message_type = "ops.sagas"
    saga_id: UUID | None = None
    state: SagaState | None = None
    min_age_seconds: float = Field(0.0, ge=0)
    limit: int = Field(50, ge=1, le=500)


class FireDeadline(Command):
    """Fire a pending deadline of a saga now, as the runner would when due."""

    message_type = "ops.fireDeadline"
    saga_id: UUID
    name: str


class RetryCompensation(Command):
    """Send again the compensations of a finished saga that were refused."""

    message_type = "ops.retryCompensation"
    saga_id: UUID


class ProjectionAction(Command):
    message_type = "ops.projection"
    projection: str
    action: Literal["rebuild", "pause", "resume"]


def install(service: Service) -> None:
    """Answer the ``ops.*`` messages for ``service``, and count its other
    requests (for the console's rates)."""
    operations = Operations(service)
    queries = service.queries
    queries.register(Status, lambda _: operations.status())
    queries.handles(Events)(operations.events)
    queries.handles(Progress)(operations.progress)
    queries.handles(Sagas)(operations.sagas)
    commands = service.commands
    commands.handles(FireDeadline)(operations.fire_deadline)
    commands.handles(RetryCompensation)(operations.retry_compensation)
    commands.handles(ProjectionAction)(operations.projection_action)
    for bus in (queries, commands):
        bus.add_middleware(operations.count)


class Operations:
    """The answers of one service."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.requests = 0
        self.errors = 0
        self._rebuilds: dict[str, threading.Thread] = {}
        self.rebuilt: dict[str, dict[str, Any]] = {}
        """The last rebuild of each projection: when it started and ended."""

    def _workers(self, kind: type[Any] | tuple[str, str]) -> list[Any]:
        """The service's workers of ``kind`` (a class, or an adapter's)."""
        found = loaded_class(*kind) if isinstance(kind, tuple) else kind
        if found is None:
            return []
        return [w for w in self.service.workers if isinstance(w, found)]

    def count(self, message: Message, call_next: Next) -> Any:
        if type(message).message_type.startswith("ops."):
            return call_next(message)
        self.requests += 1
        try:
            return call_next(message)
        except Exception:
            self.errors += 1
            raise

    # -- status ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "service": self.service.name,
            "instance": self.instance,
            "requests": self.requests,
            "errors": self.errors,
            "applications": [
                {"name": app.name, "head": app.head_position()}
                for app in self.service.applications
            ],
            "projections": [
                self._projection(r) for r in self._workers(ProjectionRunner)
            ],
            "relays": [
                {"name": r.name, "position": r.position(), "lag": r.lag()}
                for r in self._workers(RELAY)
            ],
            "consumers": [
                {"queue": c.name, "outcomes": dict(c.outcomes)}
                for c in self._workers(CONSUMER)
            ],
            "sagas": [self._saga_counts(r) for r in self._workers(ProcessRunner)],
        }

    def _projection(self, runner: ProjectionRunner[Any]) -> dict[str, Any]:
        app = runner.application
        position, head = runner.position(), app.head_position()
        rebuilding = runner.rebuilding
        return {
            "name": runner.namespace,
            "application": app.name,
            "position": position,
            "head": head,
            "lag": max(head - position, 0),
            "lag_seconds": _seconds_behind(app, position, head),
            "generation": runner.generation,
            "state": _state_of(runner),
            "rebuild": None
            if rebuilding is None
            else {"position": runner.rebuilt_position},
            "error": None if runner.last_error is None else repr(runner.last_error),
            "last_rebuild": self.rebuilt.get(runner.namespace),
        }

    def _saga_counts(self, runner: ProcessRunner) -> dict[str, Any]:
        return {
            "manager": runner.manager.name,
            "running": runner.sagas["running"],
            "completed": runner.sagas["completed"],
            "failed": runner.sagas["failed"],
            "overdue": runner.overdue(OVERDUE_GRACE),
        }

    # -- events ------------------------------------------------------------

    def events(self, query: Events) -> list[dict[str, Any]]:
        private = set().union(*(r.private_fields for r in self._workers(RELAY)))
        found = []
        for app in self.service.applications:
            for position, domain_event in _events_of(app, query.aggregate_ids):
                shown = _shown(domain_event, private)
                payload = shown["payload"]
                if all(str(payload.get(k)) == v for k, v in query.where.items()):
                    found.append(
                        {"application": app.name, "position": position, **shown}
                    )
        found.sort(key=lambda e: str(e["timestamp"]))
        return found[: query.limit]

    # -- progress ----------------------------------------------------------

    def progress(self, query: Progress) -> dict[str, Any]:
        def of(app: Application) -> list[int]:
            return sorted(set(query.positions.get(app.name, ())))[:1000]

        return {
            "published": {
                relay.name: _times(relay.milestones, relay.position(), of(relay.app))
                for relay in self._workers(RELAY)
            },
            "applied": {
                runner.namespace: _times(
                    runner.milestones, runner.position(), of(runner.application)
                )
                for runner in self._workers(ProjectionRunner)
            },
            "handled": {
                consumer.name: consumer.processed_at(query.message_ids)
                for consumer in self._workers(CONSUMER)
                if query.message_ids
            },
        }

    # -- sagas -------------------------------------------------------------

    def sagas(self, query: Sagas) -> list[dict[str, Any]]:
        if query.saga_id is not None:
            return [self._one_saga(query.saga_id)]
        listed = []
        for runner in self._workers(ProcessRunner):
            now = runner.clock()
            for saga_id, state, started, ended in _index(runner, now):
                if query.state is not None and state != query.state:
                    continue
                if _younger(started, now, query.min_age_seconds):
                    continue
                listed.append((started or ended or now, runner, saga_id, state, ended))
        listed.sort(key=lambda item: item[0], reverse=True)
        return [
            {
                "service": self.service.name,
                **_saga_summary(runner, saga_id, state, begun, ended),
            }
            for begun, runner, saga_id, state, ended in listed[: query.limit]
        ]

    def _one_saga(self, saga_id: UUID) -> dict[str, Any]:
        runner, saga = self._saga(saga_id)
        known = {i: (s, b, e) for i, s, b, e in _index(runner, runner.clock())}
        state, began, ended = known.get(saga_id, (saga.status, None, None))
        history = _saga_history(runner, saga_id)
        failed = failed_compensations(history) if saga.is_finished else []
        return {
            "service": self.service.name,
            **_saga_summary(runner, saga_id, state, began, ended),
            "failed_compensations": [c.message_type for c in failed],
        }

    def _saga(self, saga_id: UUID) -> tuple[ProcessRunner, Saga]:
        for runner in self._workers(ProcessRunner):
            try:
                saga = runner.manager.get(Saga, saga_id)
            except NotFound:
                continue
            return runner, saga
        raise NotFound(f"there is no saga {saga_id}", saga_id=str(saga_id))

    def fire_deadline(self, command: FireDeadline) -> dict[str, Any]:
        runner, saga = self._saga(command.saga_id)
        due = saga.deadlines.get(command.name)
        if due is None:
            msg = f"saga {saga.id} has no pending deadline {command.name!r}"
            raise BusinessRuleViolation(msg, saga_id=str(saga.id))
        saga.fire_deadline(command.name, max(due, runner.clock()))
        written = runner.manager.write(saga)
        logger.warning("operator fired deadline %s of saga %s", command.name, saga.id)
        return {"saga_id": saga.id, "version": written.version}

    def retry_compensation(self, command: RetryCompensation) -> dict[str, Any]:
        runner, saga = self._saga(command.saga_id)
        history = _saga_history(runner, saga.id)
        failed = failed_compensations(history)
        if not saga.is_finished or not failed:
            msg = f"saga {saga.id} has no failed compensation to send again"
            raise BusinessRuleViolation(msg, saga_id=str(saga.id))
        for issued in failed:
            saga.reissue(issued.message_type, issued.payload)
        written = runner.manager.write(saga)
        logger.warning("operator retried %s of saga %s", len(failed), saga.id)
        return {"saga_id": saga.id, "version": written.version, "retried": len(failed)}

    # -- projections ---------------------------------------------------------

    def projection_action(self, command: ProjectionAction) -> dict[str, Any]:
        runners = {r.namespace: r for r in self._workers(ProjectionRunner)}
        runner = runners.get(command.projection)
        if runner is None:
            msg = f"{self.service.name} has no projection {command.projection!r}"
            raise NotFound(msg, projection=command.projection)
        if command.action == "pause":
            runner.paused = True
        elif command.action == "resume":
            runner.paused = False
        else:
            self._rebuild(runner)
        return self._projection(runner)

    def _rebuild(self, runner: ProjectionRunner[Any]) -> None:
        running = self._rebuilds.get(runner.namespace)
        if running is not None and running.is_alive():
            return  # asking twice starts one rebuild
        thread = threading.Thread(
            target=self._run_rebuild,
            args=(runner,),
            name=f"rebuild-{runner.namespace}",
            daemon=True,
        )
        self.rebuilt[runner.namespace] = {"started": datetime.now(UTC), "ended": None}
        self._rebuilds[runner.namespace] = thread
        thread.start()

    def _run_rebuild(self, runner: ProjectionRunner[Any]) -> None:
        record = self.rebuilt[runner.namespace]
        try:
            record["generation"] = runner.rebuild()
        except Exception as e:
            record["error"] = repr(e)
            logger.exception("%s: rebuild failed", runner.namespace)
        record["ended"] = datetime.now(UTC)


def _state_of(runner: ProjectionRunner[Any]) -> str:
    if runner.rebuilding is not None:
        return "rebuilding"
    if runner.paused:
        return "paused"
    return "failing" if runner.last_error is not None else "running"


def _seconds_behind(app: Application, position: int, head: int) -> float:
    """How old the first event not applied yet is (0 when caught up)."""
    if position >= head:
        return 0.0
    for _, domain_event in _at(app, position + 1):
        behind: timedelta = datetime.now(UTC) - domain_event.timestamp
        return max(behind.total_seconds(), 0.0)
    return 0.0


def _at(app: Application, position: int) -> Iterator[tuple[int, Any]]:
    for notification in app.recorder.select_notifications(start=position, limit=1):
        yield notification.id, app.mapper.to_domain_event(notification)


def _events_of(
    app: Application, aggregate_ids: Iterable[UUID]
) -> Iterator[tuple[int | None, Any]]:
    """The events of ``aggregate_ids``, with their positions where the
    recorder can tell them (PostgreSQL)."""
    recorder = app.recorder
    ids = list(aggregate_ids)
    postgres = loaded_class(*POSTGRES_RECORDER)
    if postgres is None or not isinstance(recorder, postgres):
        for aggregate_id in ids:
            for stored in recorder.select_events(aggregate_id):
                yield None, app.mapper.to_domain_event(stored)
        return
    datastore = recorder.datastore
    keys: list[Any] = (
        ids if datastore.originator_id_type == "uuid" else list(map(str, ids))
    )
    from psycopg import sql  # present: a PostgreSQL recorder is in use

    statement = sql.SQL(
        "SELECT originator_id, originator_version, topic, state, notification_id "
        "FROM {}.{} WHERE originator_id = ANY(%s) ORDER BY notification_id"
    ).format(
        sql.Identifier(datastore.schema), sql.Identifier(recorder.events_table_name)
    )
    with datastore.get_connection() as conn:
        rows = conn.execute(statement, (keys,)).fetchall()
    for row in rows:
        notification = Notification(
            id=row["notification_id"],
            originator_id=row["originator_id"],
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )
        yield notification.id, app.mapper.to_domain_event(notification)


def _shown(domain_event: Any, private: set[str]) -> dict[str, Any]:
    """An event as the console shows it: its name, aggregate, version, time
    and payload, secrets hidden."""
    fields = dict(vars(domain_event))
    payload = {
        k: HIDDEN if SECRET.search(k) or k in private else v
        for k, v in fields.items()
        if k not in _ENVELOPE and not k.startswith("_")
    }
    shown: dict[str, Any] = to_jsonable_python(
        {
            "event": type(domain_event).__qualname__,
            "aggregate_id": domain_event.originator_id,
            "version": domain_event.originator_version,
            "timestamp": domain_event.timestamp,
            "payload": payload,
            "trace": fields.get(TRACE_FIELD) or {},
        }
    )
    return shown


def _times(
    milestones: Any, reached: int, positions: list[int]
) -> dict[int, datetime | str | None]:
    """For each position: when it was reached, ``"yes"`` if it was but the
    time is forgotten, or None if not yet."""
    return {
        p: (milestones.time_of(p) or "yes") if p <= reached else None for p in positions
    }


def _younger(started: datetime | None, now: datetime, seconds: float) -> bool:
    age = timedelta(0) if started is None else now - started
    return seconds > 0 and age < timedelta(seconds=seconds)


def _index(
    runner: ProcessRunner, now: datetime
) -> Iterator[tuple[UUID, str, datetime | None, datetime | None]]:
    """Every saga the runner knows: id, state, start and end."""
    overdue = {
        saga_id
        for (saga_id, _), due in runner.deadlines().items()
        if due < now - OVERDUE_GRACE
    }
    for saga_id, began in runner.running().items():
        yield saga_id, "overdue" if saga_id in overdue else "running", began, None
    for saga_id, (status, started, ended) in reversed(runner.finished.items()):
        yield saga_id, status, started, ended


def _saga_summary(
    runner: ProcessRunner,
    saga_id: UUID,
    state: str,
    started: datetime | None,
    ended: datetime | None,
) -> dict[str, Any]:
    saga: Any = runner.manager.repository.get(saga_id)
    summary: dict[str, Any] = to_jsonable_python(
        {
            "saga_id": saga_id,
            "manager": runner.manager.name,
            "type": type(saga).__name__,
            "key": saga.key,
            "state": state,
            "step": getattr(saga, "step", ""),
            "reason": saga.reason,
            "started": started,
            "ended": ended,
            "deadlines": dict(saga.deadlines),
            "awaiting": sorted(saga.awaiting.values()),
        }
    )
    return summary


def _saga_history(runner: ProcessRunner, saga_id: UUID) -> list[Any]:
    """A saga's changes one by one, from the events that record its steps."""
    return [
        change
        for _, domain_event in _events_of(runner.manager, [saga_id])
        for change in Saga.history_of(domain_event)
    ]


def failed_compensations(history: list[Any]) -> list[Saga.CommandIssued]:
    """The compensations in a saga's ``history`` whose last reply was an error:
    commands issued after its first failure (a refusal or a deadline that
    fired), one per message type, the latest of each."""
    failing_since = None
    issued: dict[UUID, Saga.CommandIssued] = {}
    latest: dict[str, tuple[Saga.CommandIssued, bool]] = {}
    for index, domain_event in enumerate(history):
        if isinstance(domain_event, Saga.CommandIssued):
            issued[domain_event.command_id] = domain_event
            if failing_since is not None:
                latest[domain_event.message_type] = (domain_event, False)
        elif isinstance(domain_event, Saga.ReplyReceived):
            command = issued.get(domain_event.command_id)
            if domain_event.error is not None and failing_since is None:
                failing_since = index
            elif command is not None and command.message_type in latest:
                latest[command.message_type] = (command, domain_event.error is not None)
        elif isinstance(domain_event, Saga.DeadlineFired) and failing_since is None:
            failing_since = index
    return [command for command, failed in latest.values() if failed]
