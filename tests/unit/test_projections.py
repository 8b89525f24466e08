"""Projections in the embedded mode: given these events, then these documents."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest

from ordersys import RequestTimeout
from ordersys.cache import MemoryCache
from ordersys.projections import Projection, ProjectionRunner, ReadModel
from ordersys.readmodels import Documents
from ordersys.settings import Settings, load_settings
from tests.unit.accounts import Account, Bank
from tests.unit.balances import Balances


@pytest.fixture
def bank(memory_settings: Settings) -> Bank:
    return Bank(memory_settings)


def open_account(bank: Bank, owner: str, *deposits: int) -> Account:
    account = Account(owner, Decimal(0))
    for amount in deposits:
        account.deposit(Decimal(amount))
    bank.write(account)
    return account


def test_given_events_the_projection_keeps_one_document_per_account(
    bank: Bank,
) -> None:
    ann = open_account(bank, "ann", 10, 5)
    bob = open_account(bank, "bob")
    bob.close()
    bank.write(bob)
    runner = ProjectionRunner(Balances, bank)

    runner.catch_up()

    read = ReadModel(runner.store)
    assert read.get("accounts", str(ann.id)) == {
        "owner": "ann",
        "balance": "15",
        "open": True,
    }
    assert read.get("accounts", str(bob.id)) == {
        "owner": "bob",
        "balance": "0",
        "open": False,
    }
    assert [d["owner"] for d in read.find("accounts", {"open": True})] == ["ann"]


def test_events_are_applied_in_batches_with_one_position_each() -> None:
    bank = Bank(load_settings({"persistence": "memory", "projection_batch_size": 4}))
    for n in range(5):
        open_account(bank, f"owner{n}")
    runner = ProjectionRunner(Balances, bank)

    assert runner.run_once() == 4
    assert runner.position() == 4
    assert runner.lag() == 1
    assert runner.run_once() == 1
    assert runner.run_once() == 0
    assert runner.lag() == 0
    assert ReadModel(runner.store).count("accounts") == 5


def test_a_restarted_runner_resumes_after_the_last_applied_batch(bank: Bank) -> None:
    account = open_account(bank, "ann", 1)
    first = ProjectionRunner(Balances, bank)
    first.catch_up()
    account.deposit(Decimal(2))
    bank.write(account)

    second = ProjectionRunner(Balances, bank, store=first.store)
    second.catch_up()

    doc = ReadModel(second.store).get("accounts", str(account.id))
    assert doc is not None
    assert doc["balance"] == "3"


def test_a_reader_can_wait_for_the_position_its_write_returned(bank: Bank) -> None:
    with ProjectionRunner(Balances, bank) as runner:
        written = bank.write(Account("ann", Decimal(0)))
        assert written.position is not None

        runner.wait(written.position, timeout=5)

        assert ReadModel(runner.store).get("accounts", str(written.aggregate_id))


def test_waiting_for_a_position_never_written_times_out(bank: Bank) -> None:
    runner = ProjectionRunner(Balances, bank)

    with pytest.raises(RequestTimeout):
        runner.wait(99, timeout=0.05)


def test_reads_go_through_the_cache_which_the_runner_keeps_in_step(
    bank: Bank,
) -> None:
    cache = MemoryCache()
    account = open_account(bank, "ann", 1)
    runner = ProjectionRunner(Balances, bank, cache=cache)
    runner.catch_up()
    read = ReadModel(runner.store, cache)

    assert read.get("accounts", str(account.id)) is not None
    account.deposit(Decimal(4))
    bank.write(account)
    runner.catch_up()

    cached = cache.get("balances", f"accounts:{account.id}")
    assert cached is not None
    assert cached.doc is not None
    assert cached.doc["balance"] == "5"
    assert cached.position == bank.head_position()
    doc = read.get("accounts", str(account.id))
    assert doc is not None
    assert doc["balance"] == "5"


def test_rebuild_fills_a_new_generation_and_swaps_it_in(bank: Bank) -> None:
    accounts = [open_account(bank, f"owner{n}", n + 1) for n in range(20)]
    runner = ProjectionRunner(Balances, bank, cache=MemoryCache())
    runner.catch_up()
    before = ReadModel(runner.store).find("accounts", limit=100)

    generation = runner.rebuild()

    assert generation == 2
    assert runner.store.live_generation() == 2
    assert ReadModel(runner.store).find("accounts", limit=100) == before
    accounts[0].deposit(Decimal(100))
    bank.write(accounts[0])
    runner.catch_up()
    doc = ReadModel(runner.store).get("accounts", str(accounts[0].id))
    assert doc is not None
    assert doc["balance"] == "101"


class Exploding(Projection):
    """Fails on deposits of 13 until it is fixed."""

    fixed = False

    def apply(self, domain_event: Any, docs: Documents) -> None:
        if isinstance(domain_event, Account.Deposited):
            if domain_event.amount == 13 and not Exploding.fixed:
                raise RuntimeError("unlucky deposit")
            docs.put("deposits", str(domain_event.originator_version), {})


def test_a_failing_event_is_retried_not_skipped(bank: Bank) -> None:
    open_account(bank, "ann", 1, 13, 2)
    runner = ProjectionRunner(Exploding, bank)
    failed = threading.Event()

    with runner:
        while runner.last_error is None:
            failed.wait(0.01)
        assert runner.position() == 0
        Exploding.fixed = True
        runner.wait(bank.head_position(), timeout=10)

    assert ReadModel(runner.store).count("deposits") == 3


class Calls:
    """Counts the calls of some methods of an object, which still do their work."""

    def __init__(self, target: Any, *names: str) -> None:
        self.counts = dict.fromkeys(names, 0)
        for name in names:
            setattr(target, name, self._counted(name, getattr(target, name)))

    def _counted(self, name: str, method: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] += 1
            return method(*args, **kwargs)

        return counted


def test_a_caught_up_runner_polls_with_one_read_of_the_events(bank: Bank) -> None:
    open_account(bank, "ann", 1)
    runner = ProjectionRunner(Balances, bank)
    runner.catch_up()
    view = Calls(runner.projection.view, "max_tracking_id", "get", "get_many")
    events = Calls(bank.recorder, "select_notifications")

    for _ in range(5):
        assert runner.run_once() == 0

    assert events.counts == {"select_notifications": 5}
    assert view.counts == {"max_tracking_id": 0, "get": 0, "get_many": 0}


def test_a_batch_fetches_the_documents_it_lacks_in_one_query(bank: Bank) -> None:
    accounts = [open_account(bank, f"owner{n}") for n in range(20)]
    first = ProjectionRunner(Balances, bank)
    first.catch_up()
    for account in accounts:
        account.deposit(Decimal(2))
    bank.write(*accounts)
    restarted = ProjectionRunner(Balances, bank, store=first.store)
    view = Calls(restarted.projection.view, "get", "get_many")

    assert restarted.run_once() == 20

    assert view.counts == {"get": 0, "get_many": 1}
    balances = ReadModel(restarted.store).find("accounts", limit=100)
    assert {doc["balance"] for doc in balances} == {"2"}


def test_two_runners_of_one_read_model_apply_each_event_once(bank: Bank) -> None:
    account = open_account(bank, "ann", 1)
    first = ProjectionRunner(Balances, bank)
    first.catch_up()
    second = ProjectionRunner(Balances, bank, store=first.store)
    account.deposit(Decimal(10))
    bank.write(account)
    second.catch_up()
    account.deposit(Decimal(100))
    bank.write(account)

    first.catch_up()  # its documents in memory are stale: refused, then re-read
    second.catch_up()

    doc = ReadModel(first.store).get("accounts", str(account.id))
    assert doc is not None
    assert doc["balance"] == "111"
    assert first.position() == second.position() == bank.head_position()


def test_a_rebuild_reports_its_progress_page_by_page(bank: Bank) -> None:
    for n in range(25):
        open_account(bank, f"owner{n}", 1)
    runner = ProjectionRunner(Balances, bank)
    runner.rebuild_page = 20
    heard: list[tuple[int, int]] = []

    runner.rebuild(progress=lambda done, head: heard.append((done, head)))

    assert heard == [(20, 50), (40, 50), (50, 50)]
    assert runner.rebuilt_position == 50
    assert ReadModel(runner.store).count("accounts") == 25
