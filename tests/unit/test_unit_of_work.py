"""Commands run together: what several commands write is recorded in one
transaction, and each command decides what it would have decided alone."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from ordersys import BusinessRuleViolation, Command, CommandBus, Written
from ordersys.settings import Settings
from ordersys.transport import BusRequests, Envelope, replies_from
from ordersys.unit_of_work import together
from tests.unit.accounts import Account, Bank


class Deposit(Command):
    message_type = "account.deposit"
    account_id: UUID
    amount: Decimal


class Withdraw(Command):
    message_type = "account.withdraw"
    account_id: UUID
    amount: Decimal


class Transactions:
    """How many times the bank's recorder was asked to record events."""

    def __init__(self, bank: Bank) -> None:
        self.count = 0
        recorder: Any = bank.recorder
        insert = recorder.insert_events

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return insert(*args, **kwargs)

        recorder.insert_events = counted


@pytest.fixture
def bank(memory_settings: Settings) -> Bank:
    return Bank(memory_settings)


@pytest.fixture
def account(bank: Bank) -> Account:
    opened = Account("ann", Decimal(0))
    bank.write(opened)
    return opened


def serve(bank: Bank, on_deposit: Any = None) -> BusRequests:
    bus = CommandBus()

    @bus.handles(Deposit)
    def deposit(command: Deposit) -> Written:
        if on_deposit is not None:
            on_deposit(command)
        account = bank.get(Account, command.account_id)
        account.deposit(command.amount)
        return bank.write(account)

    @bus.handles(Withdraw)
    def withdraw(command: Withdraw) -> Written:
        account = bank.get(Account, command.account_id)
        account.withdraw(command.amount)
        return bank.write(account)

    return BusRequests("bank", [bus], [bank])


def envelopes(*commands: Command) -> list[Envelope]:
    return [Envelope.new(c.message_type, c.model_dump(mode="json")) for c in commands]


def balance(bank: Bank, account: Account) -> Decimal:
    return bank.get(Account, account.id).balance


def test_commands_in_hand_together_are_recorded_in_one_transaction(
    bank: Bank, account: Account
) -> None:
    transactions = Transactions(bank)

    replies = replies_from(
        serve(bank),
        envelopes(
            Deposit(account_id=account.id, amount=Decimal(2)),
            Deposit(account_id=account.id, amount=Decimal(3)),
        ),
    )

    # The second deposit saw the first, and each answer has its own position.
    assert [r["result"]["version"] for r in replies] == [2, 3]
    assert [r["result"]["position"] for r in replies] == [2, 3]
    assert balance(bank, account) == Decimal(5)
    assert transactions.count == 1


def test_a_refused_command_of_a_batch_changes_nothing_and_the_others_stand(
    bank: Bank, account: Account
) -> None:
    requests = serve(bank)

    replies = replies_from(
        requests,
        envelopes(
            Deposit(account_id=account.id, amount=Decimal(5)),
            Withdraw(account_id=account.id, amount=Decimal(100)),
            Deposit(account_id=account.id, amount=Decimal(1)),
        ),
    )

    assert "result" in replies[0]
    assert replies[1]["error"]["code"] == BusinessRuleViolation.code
    assert "overdraft" in replies[1]["error"]["message"]
    assert replies[2]["result"]["version"] == 3
    assert balance(bank, account) == Decimal(6)
    assert requests.batches == {"together": 1}


def test_a_handler_that_fails_half_way_leaves_the_batch_as_it_found_it(
    bank: Bank, account: Account
) -> None:
    bus = CommandBus()

    @bus.handles(Deposit)
    def deposit_then_fail(command: Deposit) -> Written:
        loaded = bank.get(Account, command.account_id)
        loaded.deposit(command.amount)
        if command.amount > 10:
            raise BusinessRuleViolation("too much at once")
        return bank.write(loaded)

    replies = replies_from(
        BusRequests("bank", [bus], [bank]),
        envelopes(
            Deposit(account_id=account.id, amount=Decimal(1)),
            Deposit(account_id=account.id, amount=Decimal(50)),
            Deposit(account_id=account.id, amount=Decimal(2)),
        ),
    )

    assert [("result" in r) for r in replies] == [True, False, True]
    assert balance(bank, account) == Decimal(3)


def test_a_batch_that_cannot_be_recorded_runs_again_one_command_at_a_time(
    bank: Bank, account: Account
) -> None:
    # Another writer deposits 100 once the batch has written the account: the
    # batch's version of it is then stale, and its transaction is refused.
    other_writer = threading.Event()

    def meanwhile(command: Deposit) -> None:
        if other_writer.is_set() or command.amount != 3:
            return
        other_writer.set()

        def elsewhere() -> None:
            loaded = bank.get(Account, account.id)
            loaded.deposit(Decimal(100))
            bank.write(loaded)

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()

    requests = serve(bank, on_deposit=meanwhile)
    replies = replies_from(
        requests,
        envelopes(
            Deposit(account_id=account.id, amount=Decimal(2)),
            Deposit(account_id=account.id, amount=Decimal(3)),
        ),
    )

    assert all("result" in r for r in replies)
    assert [r["result"]["version"] for r in replies] == [3, 4]
    assert balance(bank, account) == Decimal(105)
    assert requests.batches == {"apart": 1}


def test_a_query_among_them_has_the_batch_answered_one_at_a_time(
    bank: Bank, account: Account
) -> None:
    transactions = Transactions(bank)
    requests = serve(bank)
    ping = Envelope.new(requests.ping, {})

    replies = replies_from(
        requests,
        [*envelopes(Deposit(account_id=account.id, amount=Decimal(2))), ping],
    )

    assert replies[1] == {"result": {"service": "bank"}}
    assert transactions.count == 1
    assert requests.batches == {}


def test_writes_in_a_block_are_recorded_at_its_end_and_answered_with_positions(
    bank: Bank, account: Account
) -> None:
    transactions = Transactions(bank)

    with together([bank]) as batch:
        first = bank.get(Account, account.id)
        first.deposit(Decimal(1))
        written = bank.write(first)
        with bank.writing_together():  # nested: part of the outer block
            second = bank.get(Account, account.id)
            second.deposit(Decimal(1))
            bank.write(second)
        assert transactions.count == 0
        assert written.position is None

    assert transactions.count == 1
    assert batch.resolve(written) == Written(account.id, 2, 2)
    assert balance(bank, account) == Decimal(2)


def test_a_block_that_raises_records_nothing(bank: Bank, account: Account) -> None:
    def deposit_then_fail() -> None:
        with bank.writing_together():
            loaded = bank.get(Account, account.id)
            loaded.deposit(Decimal(1))
            bank.write(loaded)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        deposit_then_fail()

    assert bank.get(Account, account.id).version == 1
