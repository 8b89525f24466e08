"""A small example domain used by the core's tests: a bank account."""

from __future__ import annotations

from decimal import Decimal

from ordersys import Aggregate, Application, BusinessRuleViolation, event


class Account(Aggregate):
    @event("Opened")
    def __init__(self, owner: str, overdraft_limit: Decimal) -> None:
        self.owner = owner
        self.overdraft_limit = overdraft_limit
        self.balance = Decimal(0)
        self.closed = False

    def deposit(self, amount: Decimal) -> None:
        self._check_open()
        if amount <= 0:
            raise BusinessRuleViolation("a deposit must be positive")
        self._deposited(amount)

    def withdraw(self, amount: Decimal) -> None:
        self._check_open()
        if amount <= 0:
            raise BusinessRuleViolation("a withdrawal must be positive")
        if self.balance - amount < -self.overdraft_limit:
            raise BusinessRuleViolation("the withdrawal exceeds the overdraft limit")
        self._withdrawn(amount)

    def close(self) -> None:
        self._check_open()
        self._closed()

    def _check_open(self) -> None:
        if self.closed:
            raise BusinessRuleViolation("the account is closed")

    @event("Deposited")
    def _deposited(self, amount: Decimal) -> None:
        self.balance += amount

    @event("Withdrawn")
    def _withdrawn(self, amount: Decimal) -> None:
        self.balance -= amount

    @event("Closed")
    def _closed(self) -> None:
        self.closed = True


class Bank(Application):
    aggregate_types = (Account,)
