"""ordersys.testing: the helpers pass what holds and fail, saying why, what
does not; the virtual clock moves event timestamps and deadlines together."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ordersys import BusinessRuleViolation, ProcessRunner, load_settings
from ordersys.testing import (
    ProjectionScenario,
    RecordingSender,
    SagaScenario,
    VirtualClock,
    given,
    when,
)
from tests.unit.accounts import Account
from tests.unit.balances import Balances
from tests.unit.bookings import PAYMENT_WINDOW, Booking, Bookings, Hold, HoldExpiry

Y2K = datetime(1999, 12, 31, 23, 50, tzinfo=UTC)


def test_events_created_under_a_virtual_clock_carry_its_time() -> None:
    with VirtualClock(Y2K) as clock:
        opened = Account("ann", Decimal(0))
        clock.advance(timedelta(minutes=5))
        opened.deposit(Decimal(1))

    events = opened.collect_events()
    assert [e.timestamp for e in events] == [Y2K, Y2K + timedelta(minutes=5)]
    assert Account("bob", Decimal(0)).collect_events()[0].timestamp > Y2K


def test_a_deadline_fires_under_a_virtual_clock_that_starts_in_the_past() -> None:
    settings = load_settings({"persistence": "memory"})
    bookings, expiry = Bookings(settings), HoldExpiry(settings)
    sender = RecordingSender()
    with VirtualClock(Y2K) as clock:
        runner = ProcessRunner(expiry, [bookings], sender, clock=clock)
        booking = Booking("concert")
        bookings.write(booking)
        runner.run_until_idle()

        clock.advance(PAYMENT_WINDOW)
        runner.run_until_idle()

    assert [s.message_type for s in sender.sent] == ["seats.hold", "seats.release"]


def test_a_virtual_clock_is_timezone_aware_and_never_goes_back() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        VirtualClock(datetime(2000, 1, 1))
    with pytest.raises(ValueError, match="does not go back"):
        VirtualClock(Y2K).advance(timedelta(seconds=-1))


def test_then_says_which_events_were_expected_and_which_came() -> None:
    outcome = given(Account("ann", Decimal(0))).when(lambda a: a.deposit(Decimal(5)))

    outcome.then(Account.Deposited, amount=Decimal(5))
    with pytest.raises(AssertionError, match=r"\['Account.Withdrawn'\]"):
        outcome.then(Account.Withdrawn)
    with pytest.raises(AssertionError, match="amount"):
        outcome.then(Account.Deposited, amount=Decimal(6))
    with pytest.raises(AssertionError, match="expected BusinessRuleViolation"):
        outcome.then_raises(BusinessRuleViolation)


def test_then_raises_checks_the_error_and_then_fails_on_one() -> None:
    outcome = when(lambda: Account("ann", Decimal(0))).then(Account.Opened)
    refused = given(Account("ann", Decimal(0))).when(lambda a: a.withdraw(Decimal(1)))

    error = refused.then_raises(BusinessRuleViolation, match="overdraft")

    assert isinstance(error, BusinessRuleViolation)
    assert outcome.aggregate is not None
    with pytest.raises(AssertionError, match="raised"):
        refused.then_nothing()


def test_given_needs_a_history() -> None:
    account = Account("ann", Decimal(0))
    account.collect_events()

    with pytest.raises(ValueError, match="new events"):
        given(account)


def test_a_projection_scenario_compares_whole_collections() -> None:
    account = Account("ann", Decimal(0))
    account.deposit(Decimal(3))
    scenario = ProjectionScenario(Balances).given(account)

    with pytest.raises(AssertionError, match="expected accounts"):
        scenario.then("accounts", {})


def test_a_saga_scenario_needs_its_clock_installed() -> None:
    scenario = SagaScenario(HoldExpiry, upstream=Bookings, clock=VirtualClock(Y2K))

    with pytest.raises(RuntimeError, match="install the scenario's clock"):
        scenario.given(Booking("concert"))


def test_a_refused_command_reaches_the_saga_as_its_typed_error() -> None:
    with VirtualClock(Y2K) as clock:
        scenario = SagaScenario(HoldExpiry, upstream=Bookings, clock=clock)
        scenario.refuses("seats.hold", BusinessRuleViolation("sold out"))
        booking = Booking("concert")

        scenario.given(booking).then_sent("seats.hold", booking_id=str(booking.id))

    scenario.then_finished(Hold, booking.id, "failed", "sold out")
    scenario.then_deadlines(Hold, booking.id, {})


def test_the_helpers_need_no_pytest_only_the_contract_suites_do() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, ordersys.testing; "
            "print(sorted(m for m in sys.modules if 'pytest' in m))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )

    assert loaded.stdout.strip() == "[]"
