"""Randomized concurrency: many threads append to shared and separate streams,
some transactions are slowed down after they have taken their notification
ids (so lower ids often commit later), while subscribers and a notification-log
reader follow the recorder.

Then every reader has seen every committed event exactly once, in increasing
id order, and every conflict was raised by an append whose version another
append had taken.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    StoredEvent,
    Subscription,
)
from eventsourcing.postgres import PostgresDatastore
from psycopg import sql

from ordersys.persistence.database import connect, ensure_database
from ordersys.persistence.recorders import PostgresEventRecorder
from ordersys.settings import load_settings

SETTINGS = load_settings({"postgres_dbname": "ordersys_test"})
WRITERS = 8
APPENDS_PER_WRITER = 60
SHARED_STREAMS = 3


@pytest.fixture
def recorder() -> Iterator[PostgresEventRecorder]:
    ensure_database(SETTINGS)
    schema = f"test_conc_{uuid.uuid4().hex[:12]}"
    with connect(SETTINGS, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    datastore = PostgresDatastore(
        dbname=SETTINGS.postgres_dbname,
        host=SETTINGS.postgres_host,
        port=SETTINGS.postgres_port,
        user=SETTINGS.postgres_user,
        password="",
        schema=schema,
        pool_size=WRITERS + 8,
    )
    recorder = PostgresEventRecorder(datastore)
    recorder.create_table()
    with connect(SETTINGS, autocommit=True) as conn:
        # A third of the appends sleep after taking their ids, before commit.
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {schema}.dawdle() RETURNS trigger LANGUAGE plpgsql "
                "AS $$ BEGIN IF random() < 0.33 THEN PERFORM pg_sleep(random() / 50);"
                " END IF; RETURN NULL; END $$; "
                "CREATE TRIGGER dawdle AFTER INSERT ON {schema}.stored_events "
                "FOR EACH STATEMENT EXECUTE FUNCTION {schema}.dawdle()"
            ).format(schema=sql.Identifier(schema))
        )
    yield recorder
    datastore.close()
    with connect(SETTINGS, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@dataclass
class Outcomes:
    written: list[list[StoredEvent]] = field(default_factory=list)
    conflicted: list[list[StoredEvent]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def write(
    recorder: PostgresEventRecorder, seed: int, shared: list[uuid.UUID], out: Outcomes
) -> None:
    rng = random.Random(seed)
    own = [uuid.uuid4() for _ in range(3)]
    for n in range(APPENDS_PER_WRITER):
        stream = rng.choice(shared) if rng.random() < 0.5 else rng.choice(own)
        last = recorder.select_events(stream, desc=True, limit=1)
        version = last[0].originator_version + 1 if last else 1
        events = [
            StoredEvent(stream, version + i, "topic", f"{seed}/{n}/{i}".encode())
            for i in range(rng.randint(1, 3))
        ]
        try:
            recorder.insert_events(events)
        except IntegrityError:
            with out.lock:
                out.conflicted.append(events)
        else:
            with out.lock:
                out.written.append(events)


def follow(subscription: Subscription[Any], seen: list[Notification]) -> None:
    with subscription:
        seen.extend(subscription)


@pytest.mark.parametrize("seed", [1, 2])
def test_readers_see_every_committed_event_once_in_order(
    recorder: PostgresEventRecorder, seed: int
) -> None:
    shared = [uuid.uuid4() for _ in range(SHARED_STREAMS)]
    out = Outcomes()
    followed: list[list[Notification]] = [[], []]
    subscriptions = [recorder.subscribe(gt=0) for _ in followed]
    followers = [
        threading.Thread(target=follow, args=(subscription, seen))
        for subscription, seen in zip(subscriptions, followed, strict=True)
    ]
    last_id: list[int] = []  # known once the writers are done
    paged: list[Notification] = []

    def read_log() -> None:
        while not (last_id and paged and paged[-1].id >= last_id[0]):
            start = paged[-1].id if paged else 0
            paged.extend(
                recorder.select_notifications(start, limit=7, inclusive_of_start=False)
            )

    writers = [
        threading.Thread(target=write, args=(recorder, seed * 100 + w, shared, out))
        for w in range(WRITERS)
    ]
    log_reader = threading.Thread(target=read_log)
    for thread in [*followers, log_reader, *writers]:
        thread.start()
    for thread in writers:
        thread.join()
    expected = sum(len(events) for events in out.written)
    # A transaction elsewhere on the server may hold readers back for a while.
    wait_until(lambda: len(recorder.select_notifications(None, 100_000)) >= expected)
    stored = recorder.select_notifications(start=None, limit=100_000)
    last_id.append(stored[-1].id)
    log_reader.join()
    for seen in followed:
        wait_until(lambda seen=seen: bool(seen) and seen[-1].id >= last_id[0])
    for subscription, follower in zip(subscriptions, followers, strict=True):
        subscription.stop()
        follower.join()

    committed = {
        (e.originator_id, e.originator_version, e.state) for w in out.written for e in w
    }
    assert {
        (n.originator_id, n.originator_version, n.state) for n in stored
    } == committed
    for seen in [*followed, paged]:
        assert [n.id for n in seen] == [n.id for n in stored]
    ids = [n.id for n in stored]
    assert ids == sorted(set(ids))
    taken = {(n.originator_id, n.originator_version): n.state for n in stored}
    for events in out.conflicted:
        assert any(
            taken.get((e.originator_id, e.originator_version)) not in (None, e.state)
            for e in events
        ), "a conflict was raised where no other append had taken the version"
        assert all(
            taken.get((e.originator_id, e.originator_version)) != e.state
            for e in events
        ), "part of a failed append was stored"
    assert out.conflicted, "the shared streams should have produced conflicts"


def wait_until(condition: Callable[[], bool]) -> None:
    """Wait for a reader that a transaction elsewhere may hold back a while."""
    pause = threading.Event()
    for _ in range(600):
        if condition():
            return
        pause.wait(0.05)
    raise AssertionError("readers did not reach the last event within 30 seconds")
