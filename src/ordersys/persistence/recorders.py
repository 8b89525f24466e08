"""ordersys' PostgreSQL recorders: the default event store of ordersys applications.

They keep every guarantee of ``eventsourcing``'s stock PostgreSQL recorders
(optimistic concurrency on ``(originator_id, originator_version)``, atomic
multi-event appends, notification ids that readers never pass over) without
its ``LOCK TABLE ... IN EXCLUSIVE MODE``, so concurrent writers commit in
parallel. docs/event-store.md explains why this is correct; in short:

* An append is one prepared SQL statement. Under a session advisory lock
  held for microseconds (never across the commit), it takes its transaction
  id and the next notification ids, so among appenders a lower notification
  id always belongs to a lower transaction id.
* A reader returns rows in notification id order and stops before the first
  gap that a transaction still running in its snapshot, with a transaction id
  between those of the rows either side of the gap, might yet fill.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import psycopg
from eventsourcing.domain import TAggregateID
from eventsourcing.persistence import (
    ApplicationRecorder,
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    Mapper,
    Notification,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    ProgrammingError,
    StoredEvent,
    Subscription,
    Transcoder,
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
from psycopg.sql import SQL, Composable, Composed, Identifier, Literal

from ordersys.persistence.mapper import FastMapper, OrjsonTranscoder
from ordersys.persistence.notifier import ThrottledNotifier
from ordersys.persistence.pool import reuse_recent_connections

MAX_NOTIFICATION_ID = 2**63 - 1
MAX_VALUES_ROWS = 16
"""Appends of up to this many events send them as scalar parameters (a
statement prepared for each count), longer ones as arrays."""
APPEND_LOCK_CLASS = 0x6F726472
"""First key of the two-key advisory locks taken by appenders ("ordr")."""
_CURSOR = "_ordersys_cursor"
"""The attribute of a connection that holds the cursor appends and reads run on."""


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
        # Rendered and prepared on first use: the statement names the table's
        # sequence, which only the server knows.
        self._append_sql: dict[int, bytes] = {}
        self._reads: dict[str, Composed] = {
            "page": self._page_sql(),
            "topics": self._topics_sql(),
        }
        self._rendered_sql: dict[str, bytes] = {}
        self._notify_statement = SQL(
            "SET LOCAL synchronous_commit = off; NOTIFY {}"
        ).format(Identifier(self.channel_name))
        self._notifier = ThrottledNotifier(self._send_notify)

    @property
    def _table(self) -> Composed:
        return SQL("{}.{}").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
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

    def _lock_key(self) -> int:
        qualified = f"{self.datastore.schema}.{self.events_table_name}"
        return zlib.crc32(qualified.encode()) - 2**31

    def _append_sql_for(self, conn: Connection[Any], rows: int) -> bytes:
        """The append statement for ``rows`` events (0: any number, as arrays),
        rendered once: one statement, no PL/pgSQL.

        Its common table expressions form one chain, each reading the row of
        the one before, so PostgreSQL evaluates them in this order: take the
        advisory lock (unless the transaction already has an id: then no row,
        nothing happens and :meth:`_append` refuses), take the transaction id
        and the notification ids, release the lock, insert. A lower id thus
        always belongs to a lower transaction id, and the lock is released
        before the insert (whose conflict is the usual failure) and long
        before the commit.
        """
        rendered = self._append_sql.get(rows)
        if rendered is not None:
            return rendered
        with conn.cursor(row_factory=tuple_row) as curs:
            found = curs.execute(
                "SELECT pg_get_serial_sequence(%s, 'notification_id')",
                (self._table.as_string(conn),),
            ).fetchone()
        assert found is not None
        assert found[0] is not None
        sequence = Literal(found[0])
        id_type = Identifier(self.datastore.originator_id_type)
        row = SQL("(%s::{id_type}, %s::bigint, %s::text, %s::bytea, {n})")
        block: Composable = SQL("")
        last = SQL("taken")
        if rows == 0:
            events: Composable = SQL(
                "unnest(%s::{id_type}[], %s::bigint[], %s::text[], %s::bytea[])"
                " WITH ORDINALITY"
            ).format(id_type=id_type)
            count: Composable = SQL("%s::bigint")  # the first parameter
        else:
            # Scalar parameters, a row of them per event: psycopg dumps each
            # array in Python, which costs more (120 µs for two events) than
            # the rest of the append.
            events = SQL("(VALUES {})").format(
                SQL(", ").join(
                    row.format(id_type=id_type, n=Literal(n))
                    for n in range(1, rows + 1)
                )
            )
            count = Literal(rows)
        if rows != 1:
            # Takes the whole block of ids at once.
            block = SQL(
                ", block AS MATERIALIZED ("
                "  SELECT tx, first_id,"
                "    setval({sequence}::regclass, first_id + {count} - 1)"
                "  FROM taken"
                ")"
            ).format(sequence=sequence, count=count)
            last = SQL("block")
        statement = SQL(
            "WITH locked AS MATERIALIZED ("
            "  SELECT pg_advisory_lock({lock_class}, {lock_key})"
            "  WHERE pg_current_xact_id_if_assigned() IS NULL"
            "), taken AS MATERIALIZED ("
            "  SELECT pg_current_xact_id() AS tx,"
            "    nextval({sequence}::regclass) AS first_id"
            "  FROM locked"
            "){block}, released AS MATERIALIZED ("
            "  SELECT tx, first_id, pg_advisory_unlock({lock_class}, {lock_key})"
            "  FROM {last}"
            ") "
            "INSERT INTO {table} (originator_id, originator_version, topic, state,"
            "                     notification_id, transaction_id) "
            "SELECT e.originator_id, e.originator_version, e.topic, e.state,"
            "       released.first_id + e.n - 1, released.tx "
            "FROM released, {events}"
            "  AS e(originator_id, originator_version, topic, state, n) "
            "RETURNING notification_id"
        ).format(
            lock_class=Literal(APPEND_LOCK_CLASS),
            lock_key=Literal(self._lock_key()),
            sequence=sequence,
            block=block,
            last=last,
            table=self._table,
            events=events,
        )
        rendered = statement.as_bytes(conn)
        self._append_sql[rows] = rendered
        return rendered

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **_: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return None
        pool = self.datastore.pool
        if pool.closed:  # the library's wrapper opens the pool
            with self.datastore.get_connection():
                pass
        # getconn/putconn, not connection(): its "with conn" would add a
        # commit() call to every append (autocommit has nothing to commit).
        conn = pool.getconn()
        try:
            notification_ids = self._append(conn, stored_events)
        finally:
            pool.putconn(conn)
        self._wake_subscribers(notification_ids)
        return notification_ids

    def _append(
        self, conn: Connection[Any], stored_events: Sequence[StoredEvent]
    ) -> list[int]:
        """Append in one round trip; returns the ids the events were given.

        Runs on a cursor kept for the connection: a new cursor would look up
        how to send and read every type again. A failure other than a conflict
        closes the connection, so that a lock an interrupted append may hold
        goes with its session.
        """
        curs = _cursor(conn)
        try:
            count = len(stored_events)
            params: tuple[Any, ...] | list[Any]
            if count <= MAX_VALUES_ROWS:
                params = [
                    value
                    for e in stored_events
                    for value in (
                        e.originator_id,
                        e.originator_version,
                        e.topic,
                        e.state,
                    )
                ]
            else:
                count = 0
                params = (
                    len(stored_events),
                    [e.originator_id for e in stored_events],
                    [e.originator_version for e in stored_events],
                    [e.topic for e in stored_events],
                    [e.state for e in stored_events],
                )
            statement = self._append_sql.get(count) or self._append_sql_for(conn, count)
            curs.execute(statement, params, prepare=True, binary=True)
            rows = curs.fetchall()
        except psycopg.IntegrityError as e:
            raise IntegrityError(str(e)) from e
        except BaseException as e:
            conn.close()
            if isinstance(e, psycopg.Error):
                raise _persistence_error(e) from e
            raise
        if len(rows) != len(stored_events):
            conn.close()
            msg = "an append must be the first write of its transaction"
            raise ProgrammingError(msg)
        first_id: int = min(row[0] for row in rows)
        return list(range(first_id, first_id + len(rows)))

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_events(
        self,
        originator_id: Any,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """The library's read of one aggregate's events, on the kept cursor,
        prepared and binary: the library composes its statement and opens a
        cursor of dictionary rows for every aggregate it loads."""
        shape = (gt is not None, lte is not None, desc, limit is not None)
        params = [originator_id]
        if gt is not None:
            params.append(gt)
        if lte is not None:
            params.append(lte)
        if limit is not None:
            params.append(limit)
        name = "events" + "".join("1" if flag else "0" for flag in shape)
        if name not in self._reads:
            self._reads[name] = self._events_sql(*shape)
        return list(map(_stored_event, self._read(name, params)))

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_events_after(
        self, versions: Sequence[tuple[Any, int]]
    ) -> Sequence[StoredEvent]:
        """The events of several aggregates, each after the version given for
        it (0 for all of its events), in one read: in order of version within
        each aggregate, all seen through the same snapshot."""
        if not versions:
            return []
        if "after" not in self._reads:
            self._reads["after"] = SQL(
                "SELECT e.originator_id, e.originator_version, e.topic, e.state "
                "FROM unnest(%s::{id_type}[], %s::bigint[]) AS w(id, after) "
                "JOIN {table} AS e ON e.originator_id = w.id "
                "  AND e.originator_version > w.after "
                "ORDER BY e.originator_id, e.originator_version"
            ).format(
                table=self._table,
                id_type=Identifier(self.datastore.originator_id_type),
            )
        params = [[i for i, _ in versions], [v for _, v in versions]]
        return list(map(_stored_event, self._read("after", params)))

    def _events_sql(self, gt: bool, lte: bool, desc: bool, limit: bool) -> Composed:
        return SQL(
            "SELECT originator_id, originator_version, topic, state FROM {table} "
            "WHERE originator_id = %s::{id_type}{gt}{lte} "
            "ORDER BY originator_version {order}{limit}"
        ).format(
            table=self._table,
            id_type=Identifier(self.datastore.originator_id_type),
            gt=SQL(" AND originator_version > %s::bigint" if gt else ""),
            lte=SQL(" AND originator_version <= %s::bigint" if lte else ""),
            order=SQL("DESC" if desc else "ASC"),
            limit=SQL(" LIMIT %s::bigint" if limit else ""),
        )

    wakes_subscribers = True
    """Whether appends are followed by a ``NOTIFY`` (see :meth:`subscribe`).
    Each is a transaction of its own: off where nothing subscribes."""

    def _wake_subscribers(self, notification_ids: Sequence[int] | None) -> None:
        if notification_ids and self.wakes_subscribers:
            self._notifier.notify()

    def _send_notify(self) -> None:
        # Without parameters this is one implicit transaction. A wake-up need
        # not wait for its commit record to reach the disk. Sent up to 200
        # times a second while appends go on: as lean as an append.
        pool = self.datastore.pool
        conn = pool.getconn()
        try:
            statement = self._rendered_sql.get("notify")
            if statement is None:
                statement = self._notify_statement.as_bytes(conn)
                self._rendered_sql["notify"] = statement
            _cursor(conn).execute(statement)
        finally:
            pool.putconn(conn)

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
        if topics:
            params["topics"] = list(topics)
            return list(map(_notification, self._read("topics", params)))
        page = self._read("page", params)
        snapshot, rows = page[0], page[1:]
        if snapshot[0] is not None:  # UNION ALL gave no order: restore it
            snapshot = next(row for row in page if row[0] is None)
            rows = sorted((row for row in page if row[0] is not None), key=_first)
        settled = settled_length(rows, after, snapshot[5] or 0, snapshot[6])
        return list(map(_notification, rows[:settled] if settled < len(rows) else rows))

    def _read(self, name: str, params: dict[str, Any] | list[Any]) -> list[TupleRow]:
        """The rows of the read ``name``, prepared, on a connection straight
        from the pool and the cursor kept with it, as appends do."""
        pool = self.datastore.pool
        if pool.closed:  # the library's wrapper opens the pool
            with self.datastore.get_connection():
                pass
        conn = pool.getconn()
        try:
            curs = _cursor(conn)
            try:
                statement = self._rendered_sql.get(name)
                if statement is None:
                    statement = self._reads[name].as_bytes(conn)
                    self._rendered_sql[name] = statement
                curs.execute(statement, params, prepare=True, binary=True)
                return curs.fetchall()
            except psycopg.Error as e:
                raise _persistence_error(e) from e
        finally:
            pool.putconn(conn)

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


_ERRORS: tuple[tuple[type[psycopg.Error], type[PersistenceError]], ...] = (
    (psycopg.InterfaceError, InterfaceError),
    (psycopg.OperationalError, OperationalError),
    (psycopg.DataError, DataError),
    (psycopg.IntegrityError, IntegrityError),
    (psycopg.InternalError, InternalError),
    (psycopg.ProgrammingError, ProgrammingError),
    (psycopg.NotSupportedError, NotSupportedError),
    (psycopg.DatabaseError, DatabaseError),
)


def _persistence_error(error: psycopg.Error) -> PersistenceError:
    """The library's exception for a psycopg one, as its datastore maps them."""
    for psycopg_class, library_class in _ERRORS:
        if isinstance(error, psycopg_class):
            return library_class(str(error))
    return PersistenceError(str(error))


def _cursor(conn: Connection[Any]) -> Cursor[TupleRow]:
    """The cursor kept with ``conn``: a new cursor would look up how to send
    and read every type again (about 12 µs)."""
    curs: Cursor[TupleRow] | None = getattr(conn, _CURSOR, None)
    if curs is None:
        curs = conn.cursor(row_factory=tuple_row)
        setattr(conn, _CURSOR, curs)
    return curs


def _first(row: TupleRow) -> int:
    first: int = row[0]
    return first


_new = object.__new__
_set = object.__setattr__


def _notification(row: TupleRow) -> Notification:
    """``Notification(id=row[0], originator_id=row[1], ...)``: the same object,
    without the frozen dataclass's ``__init__`` and its five
    ``object.__setattr__`` calls (0.3 µs instead of 0.7-1.1 µs a row)."""
    notification: Notification = _new(Notification)
    _set(
        notification,
        "__dict__",
        {
            "originator_id": row[1],
            "originator_version": row[2],
            "topic": row[3],
            "state": row[4],
            "id": row[0],
        },
    )
    return notification


def _stored_event(row: TupleRow) -> StoredEvent:
    """``StoredEvent(originator_id=row[0], ...)`` without the frozen
    dataclass's ``__init__``, as :func:`_notification` does."""
    stored: StoredEvent = _new(StoredEvent)
    _set(
        stored,
        "__dict__",
        {
            "originator_id": row[0],
            "originator_version": row[1],
            "topic": row[2],
            "state": row[3],
        },
    )
    return stored


class PollingSubscription(PostgresSubscription):
    """Follows the recorder, woken by the throttled NOTIFY and, failing that,
    by polling every ``poll_interval`` seconds."""

    poll_interval = 0.1
    page_size = 200
    """Rows per read. With the library's 500, and its ten pages queued, the
    pages waiting for the consumer outlive the garbage collector's young
    generations: moving them to the old one set off a full collection every
    few dozen pages, 1.3-1.5 µs per event, a quarter of the CPU of a
    catch-up (bench/eventstore.py's "of it GC" column)."""
    queued_pages = 2

    def __init__(
        self,
        recorder: PostgresEventRecorder,
        gt: int | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        queue = self._notifications_queue
        with queue.mutex:  # the pulling thread may be using it already
            queue.maxsize = self.queued_pages

    @property
    def _select_limit(self) -> int:
        return self.page_size

    @_select_limit.setter
    def _select_limit(self, _: int) -> None:
        """The library's constructor sets 500 before it starts pulling."""

    def __next__(self) -> Notification:
        # The library's __next__, with the common case (the page in hand has
        # more, the subscription runs) first.
        index = self._notifications_index
        notifications = self._notifications
        if index < len(notifications) and not self._has_been_stopped:
            self._notifications_index = index + 1
            return notifications[index]
        return super().__next__()

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
            notification_ids = (
                self._append(conn, stored_events) if stored_events else None
            )
            with conn.cursor() as curs:
                self._insert_tracking(curs, tracking)
        self._wake_subscribers(notification_ids)
        return notification_ids


class Factory(PostgresFactory):
    """Infrastructure factory for ordersys applications on PostgreSQL.

    Unless ``TRANSCODER_TOPIC`` or ``MAPPER_TOPIC`` say otherwise, its
    applications decode stored events with ``orjson`` and ordersys' mapper
    (:mod:`ordersys.persistence.mapper`), which make the same domain events as
    the library's, faster."""

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        reuse_recent_connections(self.datastore)

    application_recorder_class = PostgresEventRecorder
    # The library types this as its own process recorder class, which ours
    # cannot subclass without inheriting the table lock it replaces.
    process_recorder_class = PostgresEventProcessRecorder  # type: ignore[assignment]

    NOTIFY = "POSTGRES_NOTIFY"
    """``n`` or ``no``: appends send no ``NOTIFY`` (subscriptions only poll)."""

    def application_recorder(self) -> ApplicationRecorder:
        recorder = super().application_recorder()
        self._set_wake_ups(recorder)
        return recorder

    def process_recorder(self) -> ProcessRecorder:
        recorder = super().process_recorder()
        self._set_wake_ups(recorder)
        return recorder

    def _set_wake_ups(self, recorder: object) -> None:
        if isinstance(recorder, PostgresEventRecorder):
            wanted = self.env.get(self.NOTIFY, "y").strip().lower()
            recorder.wakes_subscribers = wanted not in ("n", "no", "false", "0")

    def transcoder(self) -> Transcoder:
        if self.env.get(self.TRANSCODER_TOPIC):
            return super().transcoder()
        return OrjsonTranscoder()

    def mapper(
        self,
        transcoder: Transcoder | None = None,
        mapper_class: type[Mapper[TAggregateID]] | None = None,
    ) -> Mapper[TAggregateID]:
        if mapper_class is None and not self.env.get(self.MAPPER_TOPIC):
            mapper_class = FastMapper
        return super().mapper(transcoder=transcoder, mapper_class=mapper_class)
