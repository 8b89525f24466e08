"""An example process: a seat hold that expires unless the booking is paid.

Upstream, the ``Bookings`` application records bookings. The ``HoldExpiry``
process manager holds seats for each new booking, releases them if payment
does not arrive within 15 minutes, and confirms them when it does.
"""

from __future__ import annotations

from datetime import timedelta
from functools import singledispatchmethod
from typing import Any

from eventsourcing.application import ProcessingEvent

from ordersys import Aggregate, Application, BusinessRuleViolation, Command, event
from ordersys.commands import CommandBus
from ordersys.errors import OrdersysError
from ordersys.processes import ProcessManager, Saga

PAYMENT_WINDOW = timedelta(minutes=15)


class Booking(Aggregate):
    @event("Made")
    def __init__(self, item: str) -> None:
        self.item = item
        self.paid = False

    @event("Paid")
    def pay(self) -> None:
        self.paid = True


class Bookings(Application):
    aggregate_types = (Booking,)


class HoldSeats(Command):
    message_type = "seats.hold"
    booking_id: str
    item: str


class ConfirmSeats(Command):
    message_type = "seats.confirm"
    booking_id: str


class ReleaseSeats(Command):
    message_type = "seats.release"
    booking_id: str


class Hold(Saga):
    def begin(self, item: str, made_at: Any) -> None:
        self.issue(HoldSeats(booking_id=self.key, item=item))
        self.set_deadline("payment", made_at + PAYMENT_WINDOW)

    def paid(self) -> None:
        if self.is_finished:
            return
        self.cancel_deadline("payment")
        self.issue(ConfirmSeats(booking_id=self.key))
        self.complete()

    def on_reply(
        self, message_type: str, result: Any, error: OrdersysError | None
    ) -> None:
        if message_type == HoldSeats.message_type and error is not None:
            self.fail(f"hold refused: {error.message}")

    def on_deadline(self, name: str) -> None:
        self.issue(ReleaseSeats(booking_id=self.key))
        self.fail("payment not received in time")


class HoldExpiry(ProcessManager):
    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[Any]) -> None:
        """Other events start or change nothing."""

    @policy.register
    def _(
        self, domain_event: Booking.Made, processing_event: ProcessingEvent[Any]
    ) -> None:
        if domain_event.item == "poison":
            raise ValueError("cannot hold seats for poison")
        hold = self.start_saga(Hold, domain_event.originator_id)
        hold.begin(domain_event.item, domain_event.timestamp)
        processing_event.collect_events(hold)

    @policy.register
    def _(
        self, domain_event: Booking.Paid, processing_event: ProcessingEvent[Any]
    ) -> None:
        hold = self.saga(Hold, domain_event.originator_id)
        if hold is not None:
            hold.paid()
            processing_event.collect_events(hold)


class SeatsService:
    """The receiving side: records the commands it handled."""

    def __init__(self) -> None:
        self.handled: list[tuple[str, str]] = []
        self.bus = CommandBus()
        self.bus.register(HoldSeats, self.hold)
        self.bus.register(ConfirmSeats, lambda c: self._record("confirm", c.booking_id))
        self.bus.register(ReleaseSeats, lambda c: self._record("release", c.booking_id))

    def _record(self, what: str, booking_id: str) -> dict[str, str]:
        self.handled.append((what, booking_id))
        return {"booking_id": booking_id}

    def hold(self, command: HoldSeats) -> dict[str, str]:
        if command.item == "sold out":
            raise BusinessRuleViolation(f"no seats left for {command.item}")
        return self._record("hold", command.booking_id)
