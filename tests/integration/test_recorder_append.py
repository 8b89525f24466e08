"""The append statement's own guarantees: it refuses to run after another write
of its transaction, and no failure leaves its advisory lock held."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from eventsourcing.persistence import (
    IntegrityError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresDatastore
from psycopg import sql

from ordersys.persistence.database import connect, ensure_database
from ordersys.persistence.recorders import APPEND_LOCK_CLASS, PostgresEventRecorder
from ordersys.settings import load_settings

SETTINGS = load_settings({"postgres_dbname": "ordersys_test"})


@pytest.fixture
def recorder() -> Iterator[PostgresEventRecorder]:
    ensure_database(SETTINGS)
    schema = f"test_app_{uuid.uuid4().hex[:12]}"
    with connect(SETTINGS, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    datastore = PostgresDatastore(
        dbname=SETTINGS.postgres_dbname,
        host=SETTINGS.postgres_host,
        port=SETTINGS.postgres_port,
        user=SETTINGS.postgres_user,
        password=SETTINGS.postgres_password.get_secret_value(),
        schema=schema,
        pool_size=2,
    )
    recorder = PostgresEventRecorder(datastore)
    recorder.create_table()
    yield recorder
    datastore.close()
    with connect(SETTINGS, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def new_event(version: int = 1) -> StoredEvent:
    return StoredEvent(uuid.uuid4(), version, "topic", b"{}")


def append_lock_holders(recorder: PostgresEventRecorder) -> int:
    with connect(SETTINGS, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND classid = %s::oid AND objid = %s::oid AND granted",
            (APPEND_LOCK_CLASS, recorder._lock_key() % 2**32),
        ).fetchone()
    assert row is not None
    count: int = row[0]
    return count


def test_appends_return_the_ids_they_were_given_one_block_each(
    recorder: PostgresEventRecorder,
) -> None:
    stream = uuid.uuid4()
    first = recorder.insert_events([StoredEvent(stream, 1, "topic", b"{}")])
    block = recorder.insert_events(
        [StoredEvent(stream, v, "topic", b"{}") for v in (2, 3, 4)]
    )
    last = recorder.insert_events([new_event()])

    assert (first, block, last) == ([1], [2, 3, 4], [5])
    assert [e.originator_version for e in recorder.select_events(stream)] == [
        1,
        2,
        3,
        4,
    ]
    assert recorder.insert_events([]) is None


def test_a_conflict_stores_nothing_of_the_append_and_leaves_no_lock(
    recorder: PostgresEventRecorder,
) -> None:
    stream = uuid.uuid4()
    recorder.insert_events([StoredEvent(stream, 2, "topic", b"{}")])

    with pytest.raises(IntegrityError):
        recorder.insert_events(
            [StoredEvent(stream, v, "topic", b"new") for v in (1, 2, 3)]
        )

    assert [e.originator_version for e in recorder.select_events(stream)] == [2]
    assert append_lock_holders(recorder) == 0
    assert recorder.insert_events([new_event()]) == [5]  # ids 2-4 were taken


def test_an_append_after_another_write_of_its_transaction_is_refused(
    recorder: PostgresEventRecorder,
) -> None:
    event = new_event()
    with recorder.datastore.get_connection() as conn:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_current_xact_id()")  # the transaction has an id
        with pytest.raises(ProgrammingError, match="first write"):
            recorder._append(conn, [event])
        assert conn.closed  # and with it the transaction

    assert recorder.select_events(event.originator_id) == []
    assert append_lock_holders(recorder) == 0
    assert recorder.insert_events([new_event()]) == [1]


def test_a_failure_while_the_lock_is_held_closes_the_session_and_frees_it(
    recorder: PostgresEventRecorder,
) -> None:
    # nextval fails after the advisory lock has been taken.
    sequence = f"{recorder.datastore.schema}.stored_events_notification_id_seq"
    with connect(SETTINGS, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SEQUENCE {} MAXVALUE 2").format(sql.SQL(sequence)))
    assert recorder.insert_events([new_event()]) == [1]
    assert recorder.insert_events([new_event()]) == [2]

    with pytest.raises(PersistenceError, match="maximum value"):
        recorder.insert_events([new_event()])

    assert append_lock_holders(recorder) == 0
    with connect(SETTINGS, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SEQUENCE {} NO MAXVALUE").format(sql.SQL(sequence)))
    assert recorder.insert_events([new_event()]) == [3]
