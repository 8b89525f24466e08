"""The operator messages any service answers (``ops.*``), on a service of
the seat-hold example in embedded mode: given these bookings and holds, when
an operator asks or acts, then this answer or this change."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ordersys import Aggregate, Application, BusinessRuleViolation, event
from ordersys.milestones import Milestones
from ordersys.processes import BusSender, ProcessRunner
from ordersys.service import Service
from ordersys.settings import Settings
from ordersys.transport import Envelope, serve_bus
from ordersys.transport.memory import MemoryTransport
from tests.unit.bookings import (
    PAYMENT_WINDOW,
    Booking,
    Bookings,
    HoldExpiry,
    SeatsService,
)
from tests.unit.test_processes import Clock


class Account(Aggregate):
    @event("Opened")
    def __init__(self, email: str, password_hash: str) -> None:
        self.email = email
        self.password_hash = password_hash


class Accounts(Application):
    aggregate_types = (Account,)


class Refusing(BusSender):
    """Sends commands to the seats service, refusing releases while told to."""

    refuse_release = False

    def send(self, command_type: str, payload: dict[str, Any], command_id: Any) -> Any:
        if command_type == "seats.release" and self.refuse_release:
            raise BusinessRuleViolation("the seats service is in maintenance")
        return super().send(command_type, payload, command_id)


class Seats:
    """A service of bookings, accounts and the hold process, answering over
    an in-process transport; its runner is driven step by step."""

    def __init__(self, settings: Settings) -> None:
        self.bookings = Bookings(settings)
        self.accounts = Accounts(settings)
        self.expiry = HoldExpiry(settings)
        self.seats = SeatsService()
        self.clock = Clock()
        self.sender = Refusing(self.seats.bus)
        self.runner = ProcessRunner(
            self.expiry, [self.bookings], self.sender, clock=self.clock
        )
        self.transport = MemoryTransport()
        self.service = Service(
            "seats",
            settings,
            self.transport,
            applications=[self.bookings, self.accounts, self.expiry],
            workers=[self.runner],
        )
        serve_bus(self.transport, "seats", self.service.commands, self.service.queries)

    def ask(self, message_type: str, **body: Any) -> Any:
        return self.transport.call("seats", Envelope.new(message_type, body), 5)

    def book(self, item: str = "concert") -> Booking:
        booking = Booking(item)
        self.bookings.write(booking)
        self.runner.run_until_idle()
        return booking


@pytest.fixture
def seats(memory_settings: Settings) -> Seats:
    return Seats(memory_settings)


def test_an_aggregates_events_are_shown_with_secrets_hidden(seats: Seats) -> None:
    account = Account("ann@example.com", "$argon2id$secret")
    seats.accounts.write(account)

    events = seats.ask("ops.events", aggregate_ids=[str(account.id)])

    assert [(e["event"], e["version"]) for e in events] == [("Account.Opened", 1)]
    assert events[0]["payload"] == {
        "email": "ann@example.com",
        "password_hash": "(hidden)",
    }
    assert events[0]["application"] == "Accounts"


def test_events_can_be_narrowed_by_a_payload_field(seats: Seats) -> None:
    concert, opera = seats.book("concert"), seats.book("opera")

    found = seats.ask(
        "ops.events",
        aggregate_ids=[str(concert.id), str(opera.id)],
        where={"item": "opera"},
    )

    assert [e["aggregate_id"] for e in found] == [str(opera.id)]


def test_a_saga_past_its_deadline_is_overdue_until_an_operator_fires_it(
    seats: Seats,
) -> None:
    booking = seats.book()
    seats.clock.advance(PAYMENT_WINDOW + timedelta(minutes=1))

    overdue = seats.ask("ops.sagas", state="overdue")
    assert [s["key"] for s in overdue] == [str(booking.id)]
    seats.ask("ops.fireDeadline", saga_id=overdue[0]["saga_id"], name="payment")
    seats.runner.run_until_idle()

    saga = seats.ask("ops.sagas", saga_id=overdue[0]["saga_id"])[0]
    assert (saga["state"], saga["reason"]) == ("failed", "payment not received in time")
    assert seats.seats.handled[-1] == ("release", str(booking.id))
    assert seats.ask("ops.sagas", state="overdue") == []


def test_a_deadline_that_is_not_pending_cannot_be_fired(seats: Seats) -> None:
    booking = seats.book()
    saga = seats.ask("ops.sagas", state="running")[0]
    assert saga["key"] == str(booking.id)

    with pytest.raises(BusinessRuleViolation):
        seats.ask("ops.fireDeadline", saga_id=saga["saga_id"], name="no such")


def test_status_counts_the_services_requests_and_its_sagas(seats: Seats) -> None:
    seats.book()
    seats.ask("ops.events", aggregate_ids=[str(seats.book().id)])

    status = seats.ask("ops.status")

    assert status["service"] == "seats"
    assert status["requests"] == 0  # operator messages are not counted
    assert status["sagas"] == [
        {
            "manager": "HoldExpiry",
            "running": 2,
            "completed": 0,
            "failed": 0,
            "overdue": 0,
        }
    ]


def test_milestones_tell_when_a_position_was_reached_while_they_remember() -> None:
    marks = Milestones(kept=4)
    for position in (3, 6, 9, 12, 15):
        marks.reached(position)

    assert marks.time_of(2) is None  # covered by a mark already forgotten
    assert marks.time_of(8) is not None
    assert marks.time_of(16) is None  # not reached yet


def test_a_failed_compensation_is_offered_again_and_sent_once_retried(
    seats: Seats,
) -> None:
    booking = seats.book()
    seats.sender.refuse_release = True
    seats.clock.advance(PAYMENT_WINDOW + timedelta(minutes=1))
    seats.runner.run_until_idle()
    saga_id = seats.ask("ops.sagas", state="failed")[0]["saga_id"]
    assert seats.ask("ops.sagas", saga_id=saga_id)[0]["failed_compensations"] == [
        "seats.release"
    ]

    seats.sender.refuse_release = False
    seats.ask("ops.retryCompensation", saga_id=saga_id)
    seats.runner.run_until_idle()

    assert seats.seats.handled[-1] == ("release", str(booking.id))
    assert seats.ask("ops.sagas", saga_id=saga_id)[0]["failed_compensations"] == []
    with pytest.raises(BusinessRuleViolation):
        seats.ask("ops.retryCompensation", saga_id=saga_id)
