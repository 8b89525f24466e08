"""ordersys' PostgreSQL recorders pass the ``eventsourcing`` library's own
recorder test cases, on the real PostgreSQL, and are what ordersys
applications use by default."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresTrackingRecorder,
)
from eventsourcing.tests.persistence import (
    ApplicationRecorderTestCase,
    NonInterleavingNotificationIDsBaseCase,
    ProcessRecorderTestCase,
    TrackingRecorderTestCase,
)
from psycopg import sql

from ordersys.persistence.database import connect, ensure_database
from ordersys.persistence.recorders import (
    PostgresEventProcessRecorder,
    PostgresEventRecorder,
)
from ordersys.settings import Settings, load_settings
from tests.unit.accounts import Account, Bank

SETTINGS = load_settings({"postgres_dbname": "ordersys_test"})


class FreshSchema:
    """A datastore on a schema of its own, dropped after each test."""

    datastore: PostgresDatastore

    def setUp(self) -> None:
        ensure_database(SETTINGS)
        self.schema = f"test_rec_{uuid.uuid4().hex[:12]}"
        with connect(SETTINGS, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema))
            )
        self.datastore = PostgresDatastore(
            dbname=SETTINGS.postgres_dbname,
            host=SETTINGS.postgres_host,
            port=SETTINGS.postgres_port,
            user=SETTINGS.postgres_user,
            password=SETTINGS.postgres_password.get_secret_value(),
            schema=self.schema,
            pool_size=12,
        )

    def tearDown(self) -> None:
        self.datastore.close()
        with connect(SETTINGS, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(self.schema))
            )


class TestApplicationRecorder(FreshSchema, ApplicationRecorderTestCase):
    def create_recorder(self) -> PostgresEventRecorder:
        recorder = PostgresEventRecorder(self.datastore)
        recorder.create_table()
        return recorder

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestTrackingRecorder(FreshSchema, TrackingRecorderTestCase):
    def create_recorder(self) -> PostgresTrackingRecorder:
        recorder = PostgresTrackingRecorder(self.datastore)
        recorder.create_table()
        return recorder


class TestProcessRecorder(FreshSchema, ProcessRecorderTestCase):
    def create_recorder(self) -> PostgresEventProcessRecorder:
        recorder = PostgresEventProcessRecorder(self.datastore)
        recorder.create_table()
        return recorder

    def test_events_and_tracking_are_written_together_or_not_at_all(self) -> None:
        recorder = self.create_recorder()
        first, second = (StoredEvent(uuid.uuid4(), 1, "topic", b"{}") for _ in "ab")
        recorder.insert_events([first], tracking=Tracking("upstream", 2))

        with pytest.raises(IntegrityError):
            recorder.insert_events([second], tracking=Tracking("upstream", 1))

        assert recorder.select_events(second.originator_id) == []
        assert recorder.max_tracking_id("upstream") == 2


class TestNonInterleavingNotificationIDs(
    FreshSchema, NonInterleavingNotificationIDsBaseCase
):
    def create_recorder(self) -> PostgresEventRecorder:
        recorder = PostgresEventRecorder(self.datastore)
        recorder.create_table()
        return recorder


def test_an_ordersys_application_saves_and_reads_back_through_the_recorder(
    pg_settings: Settings,
) -> None:
    bank = Bank(pg_settings)
    account = Account("ann", Decimal(0))
    account.deposit(Decimal(5))

    written = bank.write(account)

    assert type(bank.recorder) is PostgresEventRecorder
    assert Bank(pg_settings).get(Account, account.id).balance == 5
    notifications = bank.recorder.select_notifications(start=None, limit=10)
    assert [n.id for n in notifications] == [1, 2]
    assert written.position == 2


def test_the_stock_recorder_is_one_setting_away(pg_settings: Settings) -> None:
    bank = Bank(pg_settings.model_copy(update={"event_store": "stock"}))

    bank.write(Account("bob", Decimal(0)))

    assert type(bank.recorder) is PostgresApplicationRecorder
