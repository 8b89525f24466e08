"""Projections on the real PostgreSQL and Redis: crashes, rebuilds, cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from ordersys.cache import RedisCache
from ordersys.projections import ProjectionRunner, ReadModel
from ordersys.readmodels import PostgresReadModelStore
from ordersys.settings import Settings
from tests.integration.projection_worker import AppliedCounts
from tests.unit.accounts import Account, Bank
from tests.unit.balances import Balances

ROOT = Path(__file__).resolve().parents[2]


def open_accounts(bank: Bank, count: int, deposits: int = 1) -> list[Account]:
    accounts = []
    for n in range(count):
        account = Account(f"owner{n}", Decimal(0))
        for _ in range(deposits):
            account.deposit(Decimal(1))
        bank.write(account)
        accounts.append(account)
    return accounts


@pytest.fixture
def cache() -> Iterator[RedisCache]:
    cache = RedisCache("redis://127.0.0.1:6379/0", prefix=f"test-{os.getpid()}")
    yield cache
    cache.clear("balances")
    cache.close()


def test_a_projection_killed_mid_batch_neither_misses_nor_repeats_an_event(
    pg_settings: Settings,
) -> None:
    bank = Bank(pg_settings)
    open_accounts(bank, 200, deposits=4)
    worker = [sys.executable, "-m", "tests.integration.projection_worker"]
    worker.append(pg_settings.postgres_schema)
    kills = 0

    for _ in range(3):
        process = subprocess.Popen(worker, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "started"
        time.sleep(0.4)  # into the middle of a batch: each takes about 0.1 s
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
    finished = subprocess.run(
        worker, cwd=ROOT, capture_output=True, text=True, timeout=120
    )

    assert finished.returncode == 0, finished.stderr
    store = PostgresReadModelStore(pg_settings, AppliedCounts.name)
    counts = store.find("applied", limit=2000)
    store.close()
    assert kills == 3
    assert len(counts) == bank.head_position() == 1000
    assert {doc["times"] for doc in counts} == {1}


def test_read_your_writes_through_a_running_projection(
    pg_settings: Settings, cache: RedisCache
) -> None:
    bank = Bank(pg_settings)
    with ProjectionRunner(Balances, bank, cache=cache) as runner:
        account = Account("ann", Decimal(0))
        account.deposit(Decimal("2.50"))
        written = bank.write(account)
        assert written.position is not None

        runner.wait(written.position, timeout=10)

        doc = ReadModel(runner.store, cache).get("accounts", str(account.id))
        assert doc == {"owner": "ann", "balance": "2.50", "open": True}
        assert runner.lag() == 0


def test_the_cache_refills_after_a_flush_and_is_bypassed_when_redis_is_down(
    pg_settings: Settings, cache: RedisCache
) -> None:
    bank = Bank(pg_settings)
    [account] = open_accounts(bank, 1)
    runner = ProjectionRunner(Balances, bank, cache=cache)
    runner.catch_up()
    key = f"accounts:{account.id}"
    assert cache.get("balances", key) is not None

    redis.Redis.from_url("redis://127.0.0.1:6379/0").delete(
        f"test-{os.getpid()}:balances:{key}"
    )
    assert cache.get("balances", key) is None
    doc = ReadModel(runner.store, cache).get("accounts", str(account.id))

    assert doc is not None
    assert cache.get("balances", key) is not None
    down = RedisCache("redis://127.0.0.1:1/0")
    assert ReadModel(runner.store, down).get("accounts", str(account.id)) == doc


def test_rebuild_swaps_generations_while_readers_never_see_a_gap(
    pg_settings: Settings, cache: RedisCache
) -> None:
    bank = Bank(pg_settings.model_copy(update={"projection_batch_size": 100}))
    accounts = open_accounts(bank, 300)
    runner = ProjectionRunner(Balances, bank, cache=cache)
    runner.catch_up()
    reader = ReadModel(PostgresReadModelStore(pg_settings, Balances.name), cache)
    problems: list[str] = []
    reads = 0
    done = threading.Event()

    def read_continuously() -> None:
        nonlocal reads
        while not done.is_set():
            try:
                if reader.count("accounts") != 300:
                    problems.append("count")
                if reader.get("accounts", str(accounts[reads % 300].id)) is None:
                    problems.append("get")
            except Exception as e:
                problems.append(repr(e))
            reads += 1

    threads = [threading.Thread(target=read_continuously) for _ in range(3)]
    for thread in threads:
        thread.start()
    with runner:
        generation = runner.rebuild()
        time.sleep(0.2)
    done.set()
    for thread in threads:
        thread.join()
    reader.store.close()

    assert generation == 2
    assert problems == []
    assert reads > 0
    assert runner.store.live_generation() == 2


def test_two_runners_of_one_read_model_apply_each_event_once(
    pg_settings: Settings,
) -> None:
    bank = Bank(pg_settings.model_copy(update={"projection_batch_size": 40}))
    open_accounts(bank, 150, deposits=1)
    runners = [
        ProjectionRunner(
            AppliedCounts, bank, store=PostgresReadModelStore(pg_settings, "applied")
        )
        for _ in range(2)
    ]

    for runner in runners:
        runner.start()
    for runner in runners:
        runner.wait(bank.head_position(), timeout=60)
    for runner in runners:
        runner.stop()

    counts = runners[0].store.find("applied", limit=1000)
    for runner in runners:
        runner.store.close()
    assert len(counts) == bank.head_position() == 300
    assert {doc["times"] for doc in counts} == {1}


def test_a_rebuild_writes_what_the_live_runner_wrote_and_caches_afresh(
    pg_settings: Settings, cache: RedisCache
) -> None:
    bank = Bank(pg_settings.model_copy(update={"projection_batch_size": 50}))
    accounts = open_accounts(bank, 120, deposits=3)
    runner = ProjectionRunner(Balances, bank, cache=cache)
    runner.rebuild_page = 70
    runner.catch_up()
    live = runner.store.find("accounts", order_by="owner", limit=1000)

    runner.rebuild()
    accounts[0].deposit(Decimal(5))
    bank.write(accounts[0])
    runner.catch_up()

    rebuilt = runner.store.find("accounts", order_by="owner", limit=1000)
    assert rebuilt[1:] == live[1:]
    assert rebuilt[0] == {**live[0], "balance": "8"}
    cached = cache.get("balances", f"accounts:{accounts[0].id}")
    assert cached is not None
    assert cached.doc == rebuilt[0]
    assert cached.position == bank.head_position()
    assert cache.get("balances", f"accounts:{accounts[1].id}") is None


def test_a_read_model_rebuilt_before_any_event_applies_the_first_ones(
    pg_settings: Settings,
) -> None:
    bank = Bank(pg_settings)
    runner = ProjectionRunner(Balances, bank)
    runner.rebuild()

    open_accounts(bank, 3)
    runner.catch_up()

    assert runner.position() == bank.head_position() == 6
    assert runner.store.count("accounts") == 3
