"""Process managers: given these events, when time passes or replies come,
then these commands are sent and the saga is in this state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ordersys import RequestTimeout, load_settings
from ordersys.processes import BusSender, ProcessRunner
from ordersys.settings import Settings
from tests.unit.bookings import (
    PAYMENT_WINDOW,
    Booking,
    Bookings,
    Hold,
    HoldExpiry,
    HoldSeats,
    SeatsService,
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class World:
    """Bookings upstream, the hold process, the seats service, a fake clock."""

    def __init__(self, settings: Settings) -> None:
        self.bookings = Bookings(settings)
        self.expiry = HoldExpiry(settings)
        self.seats = SeatsService()
        self.clock = Clock()
        self.runner = ProcessRunner(
            self.expiry, [self.bookings], BusSender(self.seats.bus), clock=self.clock
        )

    def book(self, item: str = "concert") -> Booking:
        booking = Booking(item)
        self.bookings.write(booking)
        return booking

    def pay(self, booking: Booking) -> None:
        booking.pay()
        self.bookings.write(booking)

    def hold(self, booking: Booking) -> Hold:
        hold = self.expiry.saga(Hold, booking.id)
        assert hold is not None
        return hold


@pytest.fixture
def world(memory_settings: Settings) -> World:
    return World(memory_settings)


def test_a_new_booking_holds_seats_and_waits_for_payment(world: World) -> None:
    booking = world.book()

    world.runner.run_until_idle()

    assert world.seats.handled == [("hold", str(booking.id))]
    hold = world.hold(booking)
    assert hold.status == "running"
    assert hold.awaiting == {}
    assert list(hold.deadlines) == ["payment"]


def test_payment_confirms_and_the_deadline_never_fires(world: World) -> None:
    booking = world.book()
    world.runner.run_until_idle()
    world.pay(booking)

    world.runner.run_until_idle()
    world.clock.advance(PAYMENT_WINDOW * 2)
    world.runner.run_until_idle()

    assert world.seats.handled == [
        ("hold", str(booking.id)),
        ("confirm", str(booking.id)),
    ]
    assert world.hold(booking).status == "completed"


def test_no_payment_releases_the_seats_once_the_deadline_falls_due(
    world: World,
) -> None:
    booking = world.book()
    world.runner.run_until_idle()

    world.clock.advance(PAYMENT_WINDOW - timedelta(seconds=1))
    world.runner.run_until_idle()
    assert world.seats.handled == [("hold", str(booking.id))]

    world.clock.advance(timedelta(seconds=2))
    world.runner.run_until_idle()
    world.runner.run_until_idle()

    assert world.seats.handled == [
        ("hold", str(booking.id)),
        ("release", str(booking.id)),
    ]
    hold = world.hold(booking)
    assert (hold.status, hold.reason) == ("failed", "payment not received in time")


def test_a_refused_hold_fails_the_saga_with_the_reason(world: World) -> None:
    booking = world.book("sold out")

    world.runner.run_until_idle()

    hold = world.hold(booking)
    assert (hold.status, hold.reason) == (
        "failed",
        "hold refused: no seats left for sold out",
    )
    assert hold.deadlines == {}


def test_an_event_that_keeps_failing_is_parked_and_others_go_on(world: World) -> None:
    poison = world.book("poison")
    healthy = world.book("concert")

    world.runner.run_until_idle()

    assert world.seats.handled == [("hold", str(healthy.id))]
    [parked] = world.expiry.parked()
    assert parked.application == "Bookings"
    assert "cannot hold seats for poison" in parked.error
    assert world.expiry.saga(Hold, poison.id) is None


def test_a_command_that_keeps_failing_is_answered_with_a_timeout(world: World) -> None:
    calls = []

    def unreachable(command: HoldSeats) -> None:
        calls.append(command)
        raise RequestTimeout("seats did not reply")

    world.seats.bus = type(world.seats.bus)()
    world.seats.bus.register(HoldSeats, unreachable)
    world.runner.sender = BusSender(world.seats.bus)
    booking = world.book()

    world.runner.run_until_idle()

    assert len(calls) == world.runner.max_attempts
    hold = world.hold(booking)
    assert hold.status == "failed"
    assert "failed 5 times" in hold.reason


def test_a_deadline_fires_once_after_a_restart(tmp_path: Path) -> None:
    settings = load_settings(
        {"persistence": "sqlite", "sqlite_path": str(tmp_path / "events.db")}
    )
    before = World(settings)
    booking = before.book()
    before.runner.run_until_idle()
    del before

    after = World(settings)
    after.clock.advance(PAYMENT_WINDOW + timedelta(seconds=1))
    after.runner.run_until_idle()
    again = World(settings)
    again.clock.advance(PAYMENT_WINDOW * 3)
    again.runner.run_until_idle()

    assert after.seats.handled == [("release", str(booking.id))]
    assert again.seats.handled == []
    assert after.hold(booking).reason == "payment not received in time"
