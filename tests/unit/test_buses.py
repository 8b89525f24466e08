"""Command and query buses: one handler per message type, middleware around it."""

from __future__ import annotations

import logging
from uuid import UUID

import pytest
from eventsourcing.persistence import OperationalError

from ordersys import (
    Aggregate,
    Application,
    Command,
    CommandBus,
    Conflict,
    HandlerNotFound,
    InvalidInput,
    NotFound,
    Query,
    QueryBus,
    Written,
    event,
    logging_middleware,
    timing_middleware,
)
from ordersys.application import VersionConflict
from ordersys.bus import Next
from ordersys.commands import CONFLICT_RETRIES
from ordersys.errors import InfrastructureUnavailable
from ordersys.messages import Message
from ordersys.middleware import database_outage_middleware
from ordersys.settings import Settings


class OpenAccount(Command):
    message_type = "account.open"
    owner: str


class GetAccount(Query):
    message_type = "account.get"
    account_id: int


def test_a_command_reaches_its_one_handler_and_returns_its_result() -> None:
    bus = CommandBus()
    bus.register(OpenAccount, lambda c: f"opened for {c.owner}")

    assert bus.dispatch(OpenAccount(owner="ann")) == "opened for ann"
    assert bus.message_types == {"account.open": OpenAccount}


def test_a_second_handler_for_the_same_message_is_refused() -> None:
    bus = CommandBus()
    bus.register(OpenAccount, lambda c: None)

    with pytest.raises(ValueError, match="already has a handler"):
        bus.register(OpenAccount, lambda c: None)


def test_a_query_cannot_be_registered_on_the_command_bus() -> None:
    with pytest.raises(TypeError, match="not a Command"):
        CommandBus().register(GetAccount, lambda q: None)  # type: ignore[arg-type]


def test_a_message_without_a_handler_raises_handler_not_found() -> None:
    with pytest.raises(HandlerNotFound, match=r"account\.get"):
        QueryBus().dispatch(GetAccount(account_id=1))


def test_the_decorator_registers_a_handler() -> None:
    bus = QueryBus()

    @bus.handles(GetAccount)
    def get_account(query: GetAccount) -> dict[str, int]:
        return {"id": query.account_id}

    assert bus.dispatch(GetAccount(account_id=7)) == {"id": 7}


def test_middleware_wraps_handlers_in_order_outermost_first() -> None:
    calls: list[str] = []

    def named(name: str):  # type: ignore[no-untyped-def]
        def middleware(message: Message, call_next: Next) -> object:
            calls.append(f"{name} before")
            result = call_next(message)
            calls.append(f"{name} after")
            return result

        return middleware

    bus = CommandBus(middleware=[named("outer"), named("inner")])
    bus.register(OpenAccount, lambda c: calls.append("handler"))

    bus.dispatch(OpenAccount(owner="ann"))

    assert calls == [
        "outer before",
        "inner before",
        "handler",
        "inner after",
        "outer after",
    ]


def test_timing_middleware_reports_duration_and_outcome() -> None:
    observed: list[tuple[str, str]] = []
    bus = QueryBus(
        middleware=[
            timing_middleware(lambda m, s, o: observed.append((m.message_type, o)))
        ]
    )

    def missing(query: GetAccount) -> None:
        raise NotFound(f"account {query.account_id} not found")

    bus.register(GetAccount, missing)

    with pytest.raises(NotFound):
        bus.dispatch(GetAccount(account_id=3))
    assert observed == [("account.get", "not_found")]


def test_logging_middleware_logs_a_refusal_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = QueryBus(middleware=[logging_middleware])

    def missing(query: GetAccount) -> None:
        raise NotFound("no such account")

    bus.register(GetAccount, missing)

    with caplog.at_level(logging.INFO, logger="ordersys.bus"), pytest.raises(NotFound):
        bus.dispatch(GetAccount(account_id=3))

    assert "account.get refused: no such account (not_found)" in caplog.text
    assert "Traceback" not in caplog.text


def test_parse_names_every_bad_field() -> None:
    with pytest.raises(InvalidInput) as raised:
        GetAccount.parse({"account_id": "seven", "extra": 1})

    fields = {f["field"] for f in raised.value.details["fields"]}
    assert fields == {"account_id", "extra"}
    assert "account.get" in raised.value.message


def test_messages_are_immutable() -> None:
    command = OpenAccount(owner="ann")

    with pytest.raises(ValueError, match="frozen"):
        command.owner = "bob"  # type: ignore[misc]


def test_a_lost_database_connection_is_an_outage_not_a_failure() -> None:
    bus = CommandBus(middleware=[database_outage_middleware("db:5432")])

    def handler(command: Command) -> None:
        msg = "terminating connection due to administrator command"
        raise OperationalError(msg)

    bus.register(_Outage, handler)

    with pytest.raises(InfrastructureUnavailable) as raised:
        bus.dispatch(_Outage())

    assert raised.value.http_status == 503
    assert raised.value.message == (
        "PostgreSQL is not reachable at db:5432: "
        "terminating connection due to administrator command"
    )


class _Outage(Command):
    message_type = "test.outage"


class Counter(Aggregate):
    @event("Created")
    def __init__(self) -> None:
        self.count = 0

    @event("Bumped")
    def bump(self) -> None:
        self.count += 1


class Counters(Application):
    aggregate_types = (Counter,)


class Bump(Command):
    message_type = "counter.bump"
    counter_id: UUID


def test_a_command_that_lost_a_race_runs_again_on_what_won(
    memory_settings: Settings,
) -> None:
    # Given a counter that another writer bumps while the command's first
    # attempt has it loaded (another request, or another replica)
    counters = Counters(memory_settings)
    counter = Counter()
    counters.write(counter)
    loaded: list[int] = []
    bus = CommandBus()

    @bus.handles(Bump)
    def bump(command: Bump) -> Written:
        mine = counters.get(Counter, command.counter_id)
        loaded.append(mine.version)
        if len(loaded) == 1:
            theirs = counters.get(Counter, command.counter_id)
            theirs.bump()
            counters.write(theirs)
        mine.bump()
        return counters.write(mine)

    # When the command is dispatched
    written = bus.dispatch(Bump(counter_id=counter.id))

    # Then its handler ran again on the other writer's version, and both bumps count
    assert loaded == [1, 2]
    assert written.version == 3
    assert counters.get(Counter, counter.id).count == 2


def test_a_command_that_keeps_losing_is_answered_with_the_conflict_once() -> None:
    # Given a handler whose every save meets a newer version
    attempts: list[int] = []
    outcomes: list[str] = []
    bus = CommandBus(
        middleware=[timing_middleware(lambda m, s, outcome: outcomes.append(outcome))]
    )

    def always_stale(command: Bump) -> None:
        attempts.append(len(attempts) + 1)
        raise VersionConflict("the aggregate was changed by someone else")

    bus.register(Bump, always_stale)

    # When the command is dispatched
    with pytest.raises(VersionConflict):
        bus.dispatch(Bump(counter_id=UUID(int=1)))

    # Then it ran a few times in all, and the middleware saw one conflict
    assert len(attempts) == 1 + CONFLICT_RETRIES
    assert outcomes == ["conflict"]


def test_a_stale_expected_version_is_the_callers_conflict_not_retried() -> None:
    # Given a handler that refuses the caller's expected version
    attempts: list[Bump] = []
    bus = CommandBus()

    def stale(command: Bump) -> None:
        attempts.append(command)
        raise Conflict("Counter is at version 3, not 2")

    bus.register(Bump, stale)

    # When the command is dispatched
    with pytest.raises(Conflict):
        bus.dispatch(Bump(counter_id=UUID(int=1)))

    # Then it ran once: running it again would not make the caller's version current
    assert len(attempts) == 1


def test_a_command_bus_can_be_told_not_to_retry() -> None:
    # Given a bus without retries
    attempts: list[Bump] = []
    bus = CommandBus(conflict_retries=0)

    def stale(command: Bump) -> None:
        attempts.append(command)
        raise VersionConflict("the aggregate was changed by someone else")

    bus.register(Bump, stale)

    # When a conflicting command is dispatched
    with pytest.raises(VersionConflict):
        bus.dispatch(Bump(counter_id=UUID(int=1)))

    # Then its handler ran once
    assert len(attempts) == 1
