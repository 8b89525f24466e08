"""ordersys' PostgreSQL recorders: the default event store of ordersys applications.

They keep every guarantee of ``eventsourcing``'s stock PostgreSQL recorders
(optimistic concurrency on ``(originator_id, originator_version)``, atomic
multi-event appends, notification ids that readers never pass over) without
its ``LOCK TABLE ... IN EXCLUSIVE MODE``, so concurrent writers commit in
parallel. docs/event-store.md explains why this is correct; in short:

* An append is one call of a server-side function. Under a session advisory
  lock held for microseconds (never across the commit), it takes its
  transaction id and the next notification ids, so among appenders a lower
  notification id always belongs to a lower transaction id.
* A reader returns rows in notification id order and stops before the first
  gap that a transaction still running in its snapshot, with a transaction id
  between those of the rows either side of the gap, might yet fill.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import (
    ApplicationRecorder,
    InterfaceError,
    Notification,
    OperationalError,
    ProcessRecorder,
    StoredEvent,
    Subscription,
)
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
    PostgresSubscription,
    PostgresTrackingRecorder,
)
from eventsourcing.utils import Environment, EnvType, retry
from psycopg import Connection, Cursor
from psycopg.rows import DictRow, TupleRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from ordersys.persistence.notifier import ThrottledNotifier
from ordersys.persistence.pool import reuse_recent_connections

MAX_NOTIFICATION_ID = 2**63 - 1
APPEND_LOCK_CLASS = 0x6F726472
"""First key of the two-key advisory locks taken by appenders ("ordr")."""


class PostgresEventRecorder(PostgresApplicationRecorder):
    """Application recorder that appends without locking the table."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        # The stock insert function sends a NOTIFY inside every append.
        del self.sql_create_statements[self.create_insert_function_statement_index]
        self.sql_create_statements[self.create_table_statement_index] = SQL(
            "CREATE TABLE IF NOT EXISTS {table} ("
            "originator_id {originator_id_type} NOT NULL, "
            "originator_version bigint NOT NULL, "
            "topic text, "
            "state bytea, "
            "notification_id bigserial, "
            "transaction_id xid8 NOT NULL, "
            "PRIMARY KEY (originator_id, originator_version))"
        ).format(
            table=self._table,
            originator_id_type=Identifier(self.datastore.originator_id_type),
        )
        self.append_function_name = f"{events_table_name[:48]}_append"
        names = {
            "function": self._function,
            "id_type": Identifier(self.datastore.originator_id_type),
        }
        self._append_statement = SQL(
            "SELECT {function}(%s::{id_type}[], %s::bigint[], %s::text[], %s::bytea[])"
        ).format(**names)
        # Most appends carry one event: scalars are much cheaper to send.
        self._append_one_statement = SQL(
            "SELECT {function}(ARRAY[%s::{id_type}], ARRAY[%s::bigint],"
            " ARRAY[%s::text], ARRAY[%s::bytea])"
        ).format(**names)
        self._select_page_sql = self._page_sql()
        self._select_topics_sql = self._topics_sql()
        self._notify_statement = SQL(
            "SET LOCAL synchronous_commit = off; NOTIFY {}"
        ).format(Identifier(self.channel_name))
        self._notifier = ThrottledNotifier(self._send_notify)

    @property
    def _table(self) -> Composed:
        return SQL("{}.{}").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )

    @property
    def _function(self) -> Composed:
        return SQL("{}.{}").format(
            Identifier(self.datastore.schema), Identifier(self.append_function_name)
        )

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        # Creators in other processes would race on CREATE OR REPLACE FUNCTION.
        curs.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)",
            (APPEND_LOCK_CLASS, self._lock_key()),
        )
        super()._create_table(curs)
        # A table the stock recorder created has no transaction ids: its rows
        # were all committed long ago, which id 0 says. Without the default
        # afterwards, a stock writer appending here fails loudly instead of
        # breaking the order readers rely on.
        for statement in (
            "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "
            "transaction_id xid8 NOT NULL DEFAULT '0'",
            "ALTER TABLE {table} ALTER COLUMN transaction_id DROP DEFAULT",
        ):
            curs.execute(SQL(statement).format(table=self._table), prepare=False)
        sequence = curs.execute(
            "SELECT pg_get_serial_sequence(%s, 'notification_id') AS name",
            (self._table.as_string(curs),),
        ).fetchone()
        assert sequence is not None
        curs.execute(self._append_function_sql(sequence["name"]), prepare=False)

    def _lock_key(self) -> int:
        qualified = f"{self.datastore.schema}.{self.events_table_name}"
        return zlib.crc32(qualified.encode()) - 2**31

    def _append_function_sql(self, sequence: str) -> Composed:
        return SQL(
            "CREATE OR REPLACE FUNCTION {function}("
            "  originator_ids {id_type}[], versions bigint[],"
            "  topics text[], states bytea[]) "
            "RETURNS bigint LANGUAGE plpgsql AS $$ "
            "DECLARE "
            "  first_id bigint; "
            "  tx xid8; "
            "BEGIN "
            "  IF pg_current_xact_id_if_assigned() IS NOT NULL THEN "
            "    RAISE EXCEPTION 'an append must be the first write of its "
            "transaction' USING ERRCODE = 'invalid_transaction_state'; "
            "  END IF; "
            # The transaction id and the notification ids are taken together,
            # so a lower id always belongs to a lower transaction id. The lock
            # is released at once (even on error): commits still run in parallel.
            "  BEGIN "
            "    PERFORM pg_advisory_lock({lock_class}, {lock_key}); "
            "    tx := pg_current_xact_id(); "
            "    first_id := nextval({sequence}::regclass); "
            "    IF cardinality(versions) > 1 THEN "
            "      PERFORM setval({sequence}::regclass, "
            "                     first_id + cardinality(versions) - 1); "
            "    END IF; "
            "  EXCEPTION WHEN OTHERS THEN "
            "    PERFORM pg_advisory_unlock({lock_class}, {lock_key}); "
            "    RAISE; "
            "  END; "
            "  PERFORM pg_advisory_unlock({lock_class}, {lock_key}); "
            "  INSERT INTO {table} (originator_id, originator_version, topic, state,"
            "                       notification_id, transaction_id) "
            "  SELECT e.originator_id, e.originator_version, e.topic, e.state,"
            "         first_id + e.n - 1, tx "
            "  FROM unnest(originator_ids, versions, topics, states) WITH ORDINALITY"
            "    AS e(originator_id, originator_version, topic, state, n); "
            "  RETURN first_id; "
            "END $$"
        ).format(
            function=self._function,
            id_type=Identifier(self.datastore.originator_id_type),
            lock_class=Literal(APPEND_LOCK_CLASS),
            lock_key=Literal(self._lock_key()),
            sequence=Literal(sequence),
            table=self._table,
        )

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **_: Any
    ) -> Sequence[int] | None:
        with self.datastore.get_connection() as conn:
            notification_ids = self._append(conn, stored_events)
        self._wake_subscribers(notification_ids)
        return notification_ids

    def _append(
        self, conn: Connection[DictRow], stored_events: Sequence[StoredEvent]
    ) -> list[int] | None:
        """Append in one round trip; returns the ids the events were given."""
        if not stored_events:
            return None
        if len(stored_events) == 1:
            (e,) = stored_events
            statement = self._append_one_statement
            params: tuple[Any, ...] = (
                e.originator_id,
                e.originator_version,
                e.topic,
                e.state,
            )
        else:
            statement = self._append_statement
            params = (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            )
        with conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(statement, params, prepare=True, binary=True)
            row = curs.fetchone()
        assert row is not None
        first_id: int = row[0]
        return list(range(first_id, first_id + len(stored_events)))

    def _wake_subscribers(self, notification_ids: Sequence[int] | None) -> None:
        if notification_ids:
            self._notifier.notify()

    def _send_notify(self) -> None:
        # Without parameters this is one implicit transaction. A wake-up need
        # not wait for its commit record to reach the disk.
        with self.datastore.get_connection() as conn:
            conn.execute(self._notify_statement)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Notifications in id order from ``start``, up to the first gap that
        a transaction still running might yet fill (see the module docstring).
        """
        # The position up to which the caller has read.
        after = 0 if start is None else start - 1 if inclusive_of_start else start
        params: dict[str, Any] = {
            "after": after,
            "stop": MAX_NOTIFICATION_ID if stop is None else stop,
            "limit": limit,
        }
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as curs,
        ):
            if topics:
                params["topics"] = list(topics)
                curs.execute(self._select_topics_sql, params, prepare=True, binary=True)
                return [_notification(row) for row in curs.fetchall()]
            curs.execute(self._select_page_sql, params, prepare=True, binary=True)
            page = curs.fetchall()
        snapshot, rows = page[0], page[1:]
        if snapshot[0] is not None:  # UNION ALL gave no order: restore it
            snapshot = next(row for row in page if row[0] is None)
            rows = sorted((row for row in page if row[0] is not None), key=_first)
        settled = settled_length(rows, after, snapshot[5] or 0, snapshot[6])
        return [_notification(row) for row in rows[:settled]]

    def _page_sql(self) -> Composed:
        """One row of snapshot facts (the transaction id of the row at or before
        ``after``, the transaction ids running), then the page, with the
        transaction id of each row: all seen through the same snapshot."""
        return SQL(
            "SELECT NULL::bigint, NULL::{id_type}, NULL::bigint, NULL::text,"
            "  NULL::bytea,"
            "  (SELECT transaction_id FROM {table}"
            "   WHERE notification_id <= %(after)s::bigint"
            "   ORDER BY notification_id DESC LIMIT 1)::text::bigint,"
            "  ARRAY(SELECT x::text::bigint"
            "        FROM pg_snapshot_xip(pg_current_snapshot()) AS x) "
            "UNION ALL ("
            "  SELECT notification_id, originator_id, originator_version, topic,"
            "    state, transaction_id::text::bigint, NULL"
            "  FROM {table}"
            "  WHERE notification_id > %(after)s::bigint"
            "    AND notification_id <= %(stop)s::bigint"
            "  ORDER BY notification_id LIMIT %(limit)s::bigint)"
        ).format(
            table=self._table,
            id_type=Identifier(self.datastore.originator_id_type),
        )

    def _topics_sql(self) -> Composed:
        """The same rule as :func:`settled_length`, in SQL: with a topic filter,
        the gaps between the rows of other topics count as well."""
        return SQL(
            "WITH horizon AS MATERIALIZED ("
            "  SELECT pg_current_snapshot() AS snapshot,"
            "    coalesce((SELECT transaction_id FROM {table}"
            "              WHERE notification_id <= %(after)s::bigint"
            "              ORDER BY notification_id DESC LIMIT 1),"
            "             '0'::xid8) AS after_xid"
            "), candidates AS MATERIALIZED ("
            "  SELECT notification_id, originator_id, originator_version, topic, state"
            "  FROM {table}"
            "  WHERE notification_id > %(after)s::bigint"
            "    AND notification_id <= %(stop)s::bigint"
            "    AND topic = ANY(%(topics)s::text[])"
            "  ORDER BY notification_id LIMIT %(limit)s::bigint"
            "), span AS ("
            "  SELECT notification_id, transaction_id,"
            "    lag(notification_id, 1, %(after)s::bigint) OVER w AS previous_id,"
            "    lag(transaction_id, 1, horizon.after_xid) OVER w AS previous_xid"
            "  FROM {table}, horizon"
            "  WHERE notification_id > %(after)s::bigint"
            "    AND notification_id <= (SELECT max(notification_id) FROM candidates)"
            "  WINDOW w AS (ORDER BY notification_id)"
            "), first_unsettled AS ("
            "  SELECT coalesce(min(span.notification_id), {max_id}) AS notification_id"
            "  FROM span, horizon"
            "  WHERE span.notification_id > span.previous_id + 1"
            "    AND EXISTS (SELECT FROM pg_snapshot_xip(horizon.snapshot) AS r(xid)"
            "                WHERE r.xid > span.previous_xid"
            "                  AND r.xid < span.transaction_id)"
            ") "
            "SELECT c.* FROM candidates AS c, first_unsettled AS u "
            "WHERE c.notification_id < u.notification_id "
            "ORDER BY c.notification_id"
        ).format(table=self._table, max_id=Literal(MAX_NOTIFICATION_ID))

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        return PollingSubscription(recorder=self, gt=gt, topics=topics)


def settled_length(
    rows: Sequence[TupleRow], after: int, after_xid: int, running: Sequence[int]
) -> int:
    """How many of ``rows`` (notification id, ..., transaction id at index 5,
    in id order, following position ``after`` whose row has ``after_xid``) a
    reader may take: all of them up to the first gap in the ids that a
    transaction in ``running`` might yet fill.

    Appenders take ids in transaction id order, so the missing ids of a gap
    belong to transactions whose ids lie strictly between those of the rows
    either side. If none of those is running, they have all finished, and
    since their rows are not visible they never will be: the gap is for ever.
    """
    if not rows or rows[-1][0] - after == len(rows):
        return len(rows)  # no gap at all: the common case
    previous_id, previous_xid = after, after_xid
    for taken, row in enumerate(rows):
        if row[0] != previous_id + 1 and any(
            previous_xid < xid < row[5] for xid in running
        ):
            return taken
        previous_id, previous_xid = row[0], row[5]
    return len(rows)


def _first(row: TupleRow) -> int:
    first: int = row[0]
    return first


def _notification(row: TupleRow) -> Notification:
    return Notification(
        id=row[0],
        originator_id=row[1],
        originator_version=row[2],
        topic=row[3],
        state=row[4],
    )


class PollingSubscription(PostgresSubscription):
    """Follows the recorder, woken by the throttled NOTIFY and, failing that,
    by polling every ``poll_interval`` seconds."""

    poll_interval = 0.1

    def _listen(self) -> None:
        try:
            with self._recorder.datastore.get_connection() as conn:
                conn.execute(
                    SQL("LISTEN {}").format(Identifier(self._recorder.channel_name))
                )
                while not self._has_been_stopped and not self._thread_error:
                    for _ in conn.notifies(timeout=self.poll_interval, stop_after=1):
                        pass
                    # Woken or not: pull, so that nothing waits on a lost NOTIFY.
                    self._has_been_notified.set()
        except BaseException as e:
            if self._thread_error is None:
                self._thread_error = e
            self.stop()


class PostgresEventProcessRecorder(
    PostgresTrackingRecorder, PostgresEventRecorder, ProcessRecorder
):
    """Process recorder: events and the tracking record in one transaction."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        super().__init__(
            datastore,
            tracking_table_name=tracking_table_name,
            events_table_name=events_table_name,
        )

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        tracking = kwargs.get("tracking")
        if tracking is None:
            return super().insert_events(stored_events)
        with self.datastore.get_connection() as conn, conn.transaction():
            # The append comes first: it must take the transaction id.
            notification_ids = self._append(conn, stored_events)
            with conn.cursor() as curs:
                self._insert_tracking(curs, tracking)
        self._wake_subscribers(notification_ids)
        return notification_ids


class Factory(PostgresFactory):
    """Infrastructure factory for ordersys applications on PostgreSQL."""

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        reuse_recent_connections(self.datastore)

    application_recorder_class = PostgresEventRecorder
    # The library types this as its own process recorder class, which ours
    # cannot subclass without inheriting the table lock it replaces.
    process_recorder_class = PostgresEventProcessRecorder  # type: ignore[assignment]
