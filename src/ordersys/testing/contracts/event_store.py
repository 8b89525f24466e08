"""The event-store contract: what every persistence adapter of an
:class:`ordersys.Application` must do, whatever it stores events in.

An adapter's test module subclasses :class:`EventStoreContract` and implements
``settings()``; the same tests then run on memory, SQLite and PostgreSQL. The
tests store :class:`Account` aggregates of a :class:`Bank`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from decimal import Decimal
from typing import ClassVar

import pytest

from ordersys import Aggregate, Application, Conflict, NotFound, event
from ordersys.settings import Settings


class Account(Aggregate):
    """A bank account: what the contract stores."""

    class Opened(Aggregate.Created):
        owner: str

    class Deposited(Aggregate.Event):
        amount: Decimal

    class Withdrawn(Aggregate.Event):
        amount: Decimal

    @event(Opened)
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance = Decimal(0)

    @event(Deposited)
    def deposit(self, amount: Decimal) -> None:
        self.balance += amount

    @event(Withdrawn)
    def withdraw(self, amount: Decimal) -> None:
        self.balance -= amount


class Bank(Application):
    aggregate_types = (Account,)


class EventStoreContract(ABC):
    """Subclass as ``Test...``, implementing :meth:`settings`."""

    concurrent_writers: ClassVar[int] = 4

    @abstractmethod
    def settings(self) -> Settings:
        """Settings that select the adapter under test, on fresh storage."""

    @pytest.fixture
    def bank(self) -> Bank:
        return Bank(self.settings())

    def test_an_aggregate_is_rebuilt_from_its_events(self, bank: Bank) -> None:
        account = Account("ann")
        account.deposit(Decimal("1.10"))
        account.withdraw(Decimal("0.10"))

        bank.write(account)

        loaded = bank.get(Account, account.id)
        assert (loaded.owner, loaded.balance, loaded.version) == ("ann", Decimal(1), 3)

    def test_positions_increase_with_each_write(self, bank: Bank) -> None:
        first = bank.write(Account("ann"))
        second = bank.write(Account("bob"))

        assert first.position is not None
        assert second.position is not None
        assert second.position > first.position
        assert bank.head_position() == second.position

    def test_a_multi_event_write_is_atomic(self, bank: Bank) -> None:
        account = Account("ann")
        bank.write(account)
        stale = bank.get(Account, account.id)
        fresh = bank.get(Account, account.id)
        fresh.deposit(Decimal(1))
        bank.write(fresh)
        stale.deposit(Decimal(2))
        stale.deposit(Decimal(3))

        with pytest.raises(Conflict):
            bank.write(stale)

        assert bank.get(Account, account.id).balance == 1

    def test_an_unknown_aggregate_is_not_found(self, bank: Bank) -> None:
        with pytest.raises(NotFound):
            bank.get(Account, Account("nobody").id)

    def test_notifications_come_in_position_order_after_a_position(
        self, bank: Bank
    ) -> None:
        ids = [bank.write(Account(name)).position for name in "abc"]

        after_first = bank.recorder.select_notifications(
            start=ids[0], limit=10, inclusive_of_start=False
        )

        assert [n.id for n in after_first] == ids[1:]

    def test_concurrent_writers_of_one_aggregate_one_wins_per_version(
        self, bank: Bank
    ) -> None:
        account = Account("ann")
        bank.write(account)
        copies = [bank.get(Account, account.id) for _ in range(self.concurrent_writers)]
        outcomes: list[str] = []
        barrier = threading.Barrier(len(copies))

        def deposit(copy: Account) -> None:
            copy.deposit(Decimal(1))
            barrier.wait()
            try:
                bank.write(copy)
                outcomes.append("written")
            except Conflict:
                outcomes.append("conflict")

        threads = [threading.Thread(target=deposit, args=(c,)) for c in copies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(outcomes) == ["conflict"] * (len(copies) - 1) + ["written"]
        assert bank.get(Account, account.id).balance == 1
