"""A lending library built with ordersys as a library.

It has its own aggregate (a book copy), a command handler on a command bus, a
projection (books on loan per member) and a small saga (a loan must be
returned within 21 days, or a reminder goes out). It runs in the embedded mode
with no servers; pass ``--postgres`` to keep everything in PostgreSQL and Redis.

    python examples/library_checkout.py [--postgres]
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from functools import singledispatchmethod
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import ProcessingEvent

from ordersys import (
    Aggregate,
    Application,
    BusinessRuleViolation,
    Command,
    CommandBus,
    event,
    load_settings,
)
from ordersys.cache import open_cache
from ordersys.processes import BusSender, ProcessManager, ProcessRunner, Saga
from ordersys.projections import Projection, ProjectionRunner, ReadModel
from ordersys.readmodels import Documents

LOAN_PERIOD = timedelta(days=21)


class Copy(Aggregate):
    """One physical copy of a book."""

    @event("Acquired")
    def __init__(self, title: str) -> None:
        self.title = title
        self.borrower: str | None = None

    def lend(self, member: str) -> None:
        if self.borrower is not None:
            raise BusinessRuleViolation(f"{self.title!r} is already on loan")
        self._lent(member, self.title)

    def give_back(self) -> None:
        if self.borrower is None:
            raise BusinessRuleViolation(f"{self.title!r} is not on loan")
        self._returned(self.borrower)

    # Events carry what their consumers need (here the title, for reminders).
    @event("Lent")
    def _lent(self, member: str, title: str) -> None:  # noqa: ARG002
        self.borrower = member

    @event("Returned")
    def _returned(self, member: str) -> None:  # noqa: ARG002
        self.borrower = None


class Library(Application):
    aggregate_types = (Copy,)


class LendCopy(Command):
    message_type = "copy.lend"
    copy_id: UUID
    member: str


class ReturnCopy(Command):
    message_type = "copy.return"
    copy_id: UUID


class RemindMember(Command):
    message_type = "member.remind"
    member: str
    title: str


class Loans(Projection):
    """Books on loan, one document per copy, queryable by member."""

    name = "loans"

    @singledispatchmethod
    def apply(self, domain_event: Any, docs: Documents) -> None:
        """Acquisitions change no loan."""

    @apply.register
    def _(self, domain_event: Copy.Lent, docs: Documents) -> None:
        docs.put(
            "loans", str(domain_event.originator_id), {"member": domain_event.member}
        )

    @apply.register
    def _(self, domain_event: Copy.Returned, docs: Documents) -> None:
        docs.delete("loans", str(domain_event.originator_id))


class Loan(Saga):
    """One loan: remind the member if the copy is not back in time."""

    def begin(self, member: str, title: str, lent_at: datetime) -> None:
        self._begun(member, title)
        self.set_deadline("due", lent_at + LOAN_PERIOD)

    @event("Begun")
    def _begun(self, member: str, title: str) -> None:
        self.member = member
        self.title = title

    def on_deadline(self, name: str) -> None:  # noqa: ARG002 (one deadline)
        self.issue(RemindMember(member=self.member, title=self.title))
        self.fail("overdue")


class LoanReminders(ProcessManager):
    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[Any]) -> None:
        """Other events need no reminder."""

    @policy.register
    def _(
        self, domain_event: Copy.Lent, processing_event: ProcessingEvent[Any]
    ) -> None:
        key = f"{domain_event.originator_id}:{domain_event.originator_version}"
        loan = self.start_saga(Loan, key)
        loan.begin(domain_event.member, domain_event.title, domain_event.timestamp)
        processing_event.collect_events(loan)

    @policy.register
    def _(
        self, domain_event: Copy.Returned, processing_event: ProcessingEvent[Any]
    ) -> None:
        key = f"{domain_event.originator_id}:{domain_event.originator_version - 1}"
        loan = self.saga(Loan, key)
        if loan is not None and not loan.is_finished:
            loan.complete()
            processing_event.collect_events(loan)


def main(postgres: bool) -> None:
    settings = load_settings({} if postgres else {"persistence": "memory"})
    library = Library(settings)

    commands = CommandBus()

    @commands.handles(LendCopy)
    def lend(command: LendCopy) -> int | None:
        copy = library.get(Copy, command.copy_id)
        copy.lend(command.member)
        return library.write(copy).position

    @commands.handles(ReturnCopy)
    def give_back(command: ReturnCopy) -> int | None:
        copy = library.get(Copy, command.copy_id)
        copy.give_back()
        return library.write(copy).position

    reminders_sent: list[str] = []
    notices = CommandBus()
    notices.register(
        RemindMember, lambda c: reminders_sent.append(f"{c.member}: {c.title}")
    )

    # On PostgreSQL the library outlives this run: a member of its own keeps
    # the output about this run's loans.
    member = f"ann-{uuid4().hex[:6]}"
    dune, emma = Copy("Dune"), Copy("Emma")
    library.write(dune, emma)
    commands.dispatch(LendCopy(copy_id=dune.id, member=member))
    position = commands.dispatch(LendCopy(copy_id=emma.id, member=member))
    try:
        commands.dispatch(LendCopy(copy_id=dune.id, member="bob"))
    except BusinessRuleViolation as e:
        print("refused:", e.message)
    commands.dispatch(ReturnCopy(copy_id=emma.id))

    cache = open_cache(settings)
    with ProjectionRunner(Loans, library, cache=cache) as loans:
        loans.wait(position, timeout=10)
        loans.catch_up()
        on_loan = ReadModel(loans.store, cache).find("loans", {"member": member})
    print(member, "has", len(on_loan), "book(s) on loan")

    reminders = LoanReminders(settings)
    in_a_month = datetime.now(UTC) + timedelta(days=30)
    runner = ProcessRunner(
        reminders, [library], BusSender(notices), clock=lambda: in_a_month
    )
    runner.run_until_idle()
    print("reminders:", reminders_sent)

    assert len(on_loan) == 1
    assert f"{member}: Dune" in reminders_sent
    assert f"{member}: Emma" not in reminders_sent


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--postgres", action="store_true", help="use PostgreSQL and Redis"
    )
    main(parser.parse_args().postgres)
