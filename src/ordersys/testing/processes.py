"""Given, when, then for process managers: given these upstream events and
these replies, then these commands sent; when time passes, then the deadline.

::

    with VirtualClock(datetime(1999, 12, 31, tzinfo=UTC)) as clock:
        scenario = SagaScenario(HoldExpiry, upstream=Bookings, clock=clock)
        booking = Booking("concert")
        scenario.given(booking).then_sent("seats.hold", booking_id=str(booking.id))
        scenario.advance(timedelta(minutes=16)).then_sent("seats.release")
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Generic, Self, TypeVar

from ordersys.aggregates import Aggregate
from ordersys.application import Application
from ordersys.errors import OrdersysError
from ordersys.processes import ProcessManager, ProcessRunner, Saga
from ordersys.settings import load_settings
from ordersys.testing.clock import VirtualClock
from ordersys.testing.payloads import check_payload
from ordersys.testing.sender import RecordingSender, Sent

M = TypeVar("M", bound=ProcessManager)
S = TypeVar("S", bound=Saga)


class Upstream(Application):
    """Where the given events are written when a test names no application."""


class SagaScenario(Generic[M]):
    """A process manager in memory, following ``upstream``, sending through a
    :class:`RecordingSender`, its deadlines fired by ``clock``.

    Each step (:meth:`given`, :meth:`advance`) runs the manager until it is
    idle; ``then_*`` look at what the last step did.
    """

    def __init__(
        self,
        manager_class: type[M],
        *,
        upstream: type[Application] = Upstream,
        clock: VirtualClock,
    ) -> None:
        settings = load_settings({"persistence": "memory"})
        self.clock = clock
        self.sender = RecordingSender()
        self.upstream = upstream(settings)
        self.manager: M = manager_class(settings)
        self.runner = ProcessRunner(
            self.manager, [self.upstream], self.sender, clock=clock
        )
        self._step_starts = 0

    def replies(self, message_type: str, result: Any) -> Self:
        """Commands of ``message_type`` are answered with ``result``."""
        self.sender.reply(message_type, result)
        return self

    def refuses(self, message_type: str, error: OrdersysError) -> Self:
        """Commands of ``message_type`` are refused with ``error``."""
        self.sender.refuse(message_type, error)
        return self

    def given(self, *aggregates: Aggregate) -> Self:
        """Write ``aggregates``' new events upstream, then run the manager."""
        self._check_clock()
        self.upstream.write(*aggregates)
        return self._run()

    def advance(self, by: timedelta) -> Self:
        """Let ``by`` pass on the clock, then run the manager (due deadlines fire)."""
        self._check_clock()
        self.clock.advance(by)
        return self._run()

    @property
    def sent(self) -> list[Sent]:
        """The commands the last step sent, in order."""
        return self.sender.sent[self._step_starts :]

    def then_sent(self, *message_types: str, **fields: Any) -> Self:
        """Assert the last step sent commands of ``message_types``, in order;
        with ``fields``, one command whose payload has them (as sent: JSON
        values, so a ``Decimal`` or a ``UUID`` is compared as its string)."""
        sent = [s.message_type for s in self.sent]
        if sent != list(message_types):
            raise AssertionError(f"expected commands {list(message_types)}, got {sent}")
        if fields:
            if len(message_types) != 1:
                msg = "then_sent(...) checks the fields of exactly one command"
                raise TypeError(msg)
            check_payload(message_types[0], self.sent[0].payload, **fields)
        return self

    def saga(self, saga_type: type[S], key: object) -> S:
        """The ``saga_type`` saga for ``key``; AssertionError if never started."""
        saga = self.manager.saga(saga_type, key)
        if saga is None:
            raise AssertionError(f"no {saga_type.__qualname__} saga for {key}")
        return saga

    def then_deadlines(
        self, saga_type: type[Saga], key: object, deadlines: Mapping[str, datetime]
    ) -> Self:
        """Assert the saga's pending deadlines are exactly ``deadlines``."""
        pending = self.saga(saga_type, key).deadlines
        if pending != dict(deadlines):
            raise AssertionError(f"expected deadlines {dict(deadlines)}, got {pending}")
        return self

    def then_finished(
        self, saga_type: type[Saga], key: object, status: str, reason: str = ""
    ) -> Self:
        """Assert the saga finished with ``status`` (and ``reason`` in its reason)."""
        saga = self.saga(saga_type, key)
        if saga.status != status or reason not in saga.reason:
            raise AssertionError(
                f"expected {status} ({reason!r}), got {saga.status} ({saga.reason!r})"
            )
        return self

    def _run(self) -> Self:
        self._step_starts = len(self.sender.sent)
        self.runner.run_until_idle()
        return self

    def _check_clock(self) -> None:
        if not self.clock.installed:
            msg = (
                "install the scenario's clock first (with VirtualClock(...) as "
                "clock:), so that events and deadlines share one time"
            )
            raise RuntimeError(msg)
