"""Aggregates: given these events, when this command, then these events or
this error."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from ordersys import BusinessRuleViolation, InvalidInput
from tests.unit.accounts import Account


def new_events(account: Account) -> list[str]:
    return [type(e).__name__ for e in account.collect_events()]


def opened(limit: str = "0") -> Account:
    account = Account("ann", Decimal(limit))
    account.collect_events()
    return account


def test_opening_an_account_records_opened() -> None:
    account = Account("ann", Decimal(100))

    assert new_events(account) == ["Opened"]
    assert account.balance == 0
    assert account.version == 1


def test_deposit_records_deposited_and_raises_the_balance() -> None:
    account = opened()

    account.deposit(Decimal("12.50"))

    assert new_events(account) == ["Deposited"]
    assert account.balance == Decimal("12.50")


def test_withdrawal_beyond_the_overdraft_limit_is_refused_and_records_nothing() -> None:
    account = opened(limit="10")

    with pytest.raises(BusinessRuleViolation, match="overdraft"):
        account.withdraw(Decimal(11))

    assert new_events(account) == []
    assert account.balance == 0


def test_a_closed_account_refuses_deposits() -> None:
    account = opened()
    account.close()
    account.collect_events()

    with pytest.raises(BusinessRuleViolation, match="closed"):
        account.deposit(Decimal(1))


def test_a_payload_of_the_wrong_type_fails_when_the_command_runs() -> None:
    account = opened()

    with pytest.raises(InvalidInput, match="amount") as raised:
        account._deposited(12.5)  # type: ignore[arg-type]

    assert raised.value.details["fields"][0]["field"] == "amount"
    assert new_events(account) == []
    assert account.balance == 0


def test_a_created_event_validates_its_payload_too() -> None:
    with pytest.raises(InvalidInput, match="owner"):
        Account(owner=42, overdraft_limit=Decimal(0))  # type: ignore[arg-type]


def test_a_deep_copy_is_equal_and_changes_apart_from_the_original() -> None:
    account = opened("50")
    account.deposit(Decimal(10))
    account.collect_events()

    copied = copy.deepcopy(account)
    copied.withdraw(Decimal(5))

    assert type(copied) is Account
    assert (account.balance, account.version) == (Decimal(10), 2)
    assert (copied.balance, copied.version) == (Decimal(5), 3)
    assert new_events(account) == []
    assert (copied.id, copied.created_on) == (account.id, account.created_on)


def test_a_deep_copy_copies_what_can_change_inside() -> None:
    account = opened()
    account.tags = {"vip": ["gold"]}  # type: ignore[attr-defined]

    copied = copy.deepcopy(account)
    copied.tags["vip"].append("silver")  # type: ignore[attr-defined]

    assert account.tags == {"vip": ["gold"]}  # type: ignore[attr-defined]
