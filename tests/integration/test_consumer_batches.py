"""A consumer applies the messages delivered together in one transaction of
its record store and acknowledges them with one ack, on the real RabbitMQ and
PostgreSQL: a failing message is isolated, a malformed one dead-lettered at
once, a message delivered twice in one batch applied once, and a consumer
killed with -9 in the middle of its batches loses and doubles nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.message import Message as KombuMessage

from ordersys.messaging.consumer import queues_for
from ordersys.readmodels.records_postgres import PostgresRecords, PostgresRecordStore
from ordersys.settings import Settings
from ordersys.testing import eventually
from ordersys.transport import ERROR_HEADER
from tests.integration.test_messaging_rabbitmq import (
    ROOT,
    URL,
    Ledger,
    dead_letters,
    prefix,
    queue_depth,
)

__all__ = ["prefix"]  # the fixture, shared with the messaging tests

Queued = tuple[bytes, str]
"""A message's body and id."""


def opened(n: int, owner: str = "owner") -> Queued:
    body = {"message_type": "Opened", "body": {"owner": f"{owner}{n}"}}
    return json.dumps(body).encode(), f"bank:{n}"


def queue_up(prefix: str, messages: list[Queued]) -> None:
    """Declare the ledger's queue (as its consumer does) and put ``messages``
    in it, confirmed, before anything consumes them."""
    queue, dlq = queues_for(prefix, "ledger", ["bank.*"], max_attempts=3)
    with Connection(URL) as connection:
        channel = connection.channel()
        queue(channel).declare()
        dlq(channel).declare()
        channel.confirm_select()
        for body, message_id in messages:
            channel.basic_publish(
                channel.prepare_message(
                    body,
                    content_type="application/json",
                    headers={"message_id": message_id},
                    properties={"delivery_mode": 2},
                ),
                exchange=f"{prefix}.events",
                routing_key="bank.Opened",
            )


def unacknowledged(queue: str) -> int:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "messages_unacknowledged"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    counts = dict(line.split() for line in listed if len(line.split()) == 2)
    return int(counts[queue])


@pytest.fixture
def acks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each acknowledgement the consumers send covers many messages."""
    sent: list[bool] = []
    ack = KombuMessage.ack

    def counted(message: KombuMessage, multiple: bool = False) -> None:
        sent.append(multiple)
        ack(message, multiple=multiple)

    monkeypatch.setattr(KombuMessage, "ack", counted)
    return sent


def counting_transactions(ledger: Ledger) -> list[int]:
    """One entry per write transaction of the ledger consumer's store."""
    store = ledger.consumer.store
    assert isinstance(store, PostgresRecordStore)
    begun: list[int] = []
    transaction = store.transaction

    def counted() -> Any:
        begun.append(1)
        return transaction()

    store.transaction = counted  # type: ignore[method-assign]
    return begun


def test_messages_queued_together_are_applied_in_few_transactions_and_acks(
    pg_settings: Settings, prefix: str, acks: list[bool]
) -> None:
    # Given 500 events waiting in the queue
    queue_up(prefix, [opened(n) for n in range(500)])
    ledger = Ledger(pg_settings, prefix)
    transactions = counting_transactions(ledger)

    # When the consumer starts
    ledger.consumer.start()

    # Then it applies each once, in batches, and acknowledges each batch once
    assert eventually(lambda: len(ledger.rows()) == 500, within=60)
    assert eventually(lambda: unacknowledged(f"{prefix}.ledger") == 0)
    ledger.consumer.stop()
    rows = ledger.rows()
    print(f"500 messages: {len(transactions)} transactions, {len(acks)} acks")
    assert len({message_id for message_id, _ in rows}) == 500
    assert len(transactions) <= 500 // 10  # more than one, should an outage intervene
    assert len(acks) <= len(transactions)
    assert all(acks)
    assert queue_depth(f"{prefix}.ledger") == 0
    assert ledger.consumer.outcomes == {"applied": 500}


def test_a_failing_message_in_a_batch_is_isolated_and_the_others_apply_once(
    pg_settings: Settings, prefix: str
) -> None:
    # Given a batch whose 25th message's handler always fails
    queue_up(prefix, [opened(n) for n in range(50)])
    ledger = Ledger(pg_settings, prefix, poison="owner24")

    # When the consumer takes it
    ledger.consumer.start()

    # Then the others apply once each, and only the failing one is retried,
    # then dead-lettered after its own attempts
    assert eventually(lambda: queue_depth(f"{prefix}.ledger.dlq") == 1, within=30)
    ledger.consumer.stop()
    rows = ledger.rows()
    assert len(rows) == len({message_id for message_id, _ in rows}) == 49
    assert "bank:24" not in {message_id for message_id, _ in rows}
    [(_, headers)] = dead_letters(prefix)
    assert headers[ERROR_HEADER].startswith("failed 3 times: RuntimeError")
    assert ledger.consumer.outcomes == {"applied": 49, "retried": 2, "dead_lettered": 1}
    assert queue_depth(f"{prefix}.ledger") == 0


def test_a_malformed_message_and_a_message_delivered_twice_in_one_batch(
    pg_settings: Settings, prefix: str, acks: list[bool]
) -> None:
    # Given a batch with a malformed message and the same message twice
    queue_up(
        prefix,
        [opened(1), (b"{not json", "bank:x"), opened(2), opened(1), opened(3)],
    )
    ledger = Ledger(pg_settings, prefix)

    # When the consumer takes it
    ledger.consumer.start()

    # Then the malformed one is dead-lettered at once, the twice-delivered one
    # applied once, and every one is acknowledged
    assert eventually(lambda: len(ledger.rows()) == 3)
    assert eventually(lambda: queue_depth(f"{prefix}.ledger.dlq") == 1)
    assert eventually(lambda: unacknowledged(f"{prefix}.ledger") == 0)
    ledger.consumer.stop()
    assert sorted(message_id for message_id, _ in ledger.rows()) == [
        "bank:1",
        "bank:2",
        "bank:3",
    ]
    [(_, headers)] = dead_letters(prefix)
    assert "malformed" in headers[ERROR_HEADER]
    assert ledger.consumer.outcomes == {
        "applied": 3,
        "duplicate": 1,
        "dead_lettered": 1,
    }
    assert ledger.consumer.duplicates == 1
    assert acks == [True]


def waiting_for(predicate: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not predicate():
        assert process.poll() is None, "the consumer process ended by itself"
        assert time.monotonic() < deadline
        time.sleep(0.05)


def state_of(ledger: Ledger, prefix: str) -> str:
    """What a stalled consumer has and has not done, for the failure's message."""
    queue = f"{prefix}.ledger"
    return (
        f"{len(ledger.rows())} rows applied; queue {queue_depth(queue)} ready, "
        f"{unacknowledged(queue)} unacknowledged; "
        f"dead letters {queue_depth(queue + '.dlq')}; "
        f"outcomes {dict(ledger.consumer.outcomes)}; "
        f"waiting for {ledger.consumer.outages.down}; "
        f"PostgreSQL backends by state: {backends()}"
    )


def backends() -> dict[str, int]:
    listed = subprocess.run(
        [
            *("psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc"),
            "SELECT coalesce(state, '-') || ' ' || coalesce(wait_event_type, '-'),"
            " count(*) FROM pg_stat_activity GROUP BY 1",
        ],
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    return {row.split("|")[0]: int(row.split("|")[1]) for row in listed if "|" in row}


def test_a_consumer_killed_mid_batch_loses_and_doubles_nothing(
    pg_settings: Settings, prefix: str
) -> None:
    # Given 1,500 events waiting, and a consumer process whose handler is slow
    count = 1500
    queue_up(prefix, [opened(n) for n in range(count)])
    ledger = Ledger(pg_settings, prefix)  # to read the rows, and to finish
    worker = [sys.executable, "-m", "tests.integration.consumer_worker"]
    worker += [pg_settings.postgres_schema, prefix]

    # When the process is killed with -9 three times, in the middle of batches
    for kill in range(1, 4):
        process = subprocess.Popen(worker, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "started"
        waiting_for(lambda k=kill: len(ledger.rows()) >= k * 200, process)
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = len(ledger.rows())
    ledger.consumer.start()

    # Then a consumer that takes over applies the rest, and nothing twice
    applied_all = eventually(lambda: len(ledger.rows()) >= count, within=120)
    assert applied_all, state_of(ledger, prefix)
    assert eventually(lambda: queue_depth(f"{prefix}.ledger") == 0)
    ledger.consumer.stop()
    rows = ledger.rows()
    duplicates = ledger.consumer.duplicates
    print(
        f"{count} events, consumer killed 3 times ({killed_at} applied by then), "
        f"{duplicates} redelivered ones left alone"
    )
    assert len(rows) == len({message_id for message_id, _ in rows}) == count
    assert queue_depth(f"{prefix}.ledger.dlq") == 0


def synchronous_commit(store: PostgresRecordStore) -> list[str]:
    """What each of a few write transactions of ``store`` commits with."""
    found = []
    for n in range(3):
        with store.transaction() as records:
            assert isinstance(records, PostgresRecords)
            records.put("ledger", f"k{n}", {"n": n})
            row = records.cursor.execute("SHOW synchronous_commit").fetchone()
            assert row is not None
            found.append(str(row["synchronous_commit"]))
    return found


def test_a_store_of_rebuildable_documents_commits_without_waiting_for_the_disk(
    pg_settings: Settings,
) -> None:
    # Given a store opened for rebuildable documents, and one by default
    rebuildable = PostgresRecordStore(
        pg_settings, pg_settings.postgres_schema, "figures", durable=False
    )
    durable = PostgresRecordStore(pg_settings, pg_settings.postgres_schema, "effects")

    # When each has committed a transaction
    settings = {
        "rebuildable": synchronous_commit(rebuildable),
        "durable": synchronous_commit(durable),
    }
    with rebuildable.reading() as records:
        kept = records.get("ledger", "k1")
    rebuildable.close()
    durable.close()

    # Then only the first commits with synchronous_commit off
    assert settings == {"rebuildable": ["off"] * 3, "durable": ["on"] * 3}
    assert kept == {"n": 1}
