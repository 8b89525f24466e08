"""A record store in a schema of PostgreSQL.

A store's documents are rows of ``<name>_records`` (JSONB, numbered by a
sequence in the order first written); applied messages are rows of
``ordersys_processed_messages``. In a write transaction ``get`` reads
``FOR UPDATE`` and ``find`` reads ``FOR UPDATE SKIP LOCKED``.

A batch's dedupe records are inserted in one statement that returns the ids
it inserted: like a single message's, it waits for a concurrent transaction
that holds the same id, so two consumers never both take a message as new.

A store opened with ``durable=False`` sets ``synchronous_commit = off`` on
each of its connections, once (in the first write transaction that commits on
it, so a rolled-back one leaves the connection durable, never the reverse).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from psycopg import Connection, Cursor, sql
from psycopg.rows import DictRow

from ordersys.persistence.database import (
    creating_tables,
    ensure_schema,
    schema_name,
)
from ordersys.readmodels.records import (
    Records,
    RecordStore,
    json_text,
    scalar_filter,
)
from ordersys.readmodels.store import Document
from ordersys.settings import Settings

TABLES = """
CREATE TABLE IF NOT EXISTS {records} (
    collection text NOT NULL, key text NOT NULL, seq bigserial NOT NULL,
    doc jsonb NOT NULL, PRIMARY KEY (collection, key));
CREATE INDEX IF NOT EXISTS {by_doc} ON {records}
    USING gin (doc jsonb_path_ops);
CREATE TABLE IF NOT EXISTS {processed} (
    consumer text NOT NULL, message_id text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id));
"""


class Statements:
    """Statements with the store's table names, each composed once (composing
    costs more than running a statement takes)."""

    def __init__(self, schema: str, name: str) -> None:
        table = f"{schema_name(name)}_records"
        self.names = {
            "records": sql.Identifier(schema, table),
            "processed": sql.Identifier(schema, "ordersys_processed_messages"),
            "by_doc": sql.Identifier(f"{table}_doc"),
        }
        self._composed: dict[str, sql.Composed] = {}

    def sql(self, text: str) -> sql.Composed:
        composed = self._composed.get(text)
        if composed is None:
            composed = self._composed[text] = sql.SQL(text).format(**self.names)
        return composed


class PostgresRecords(Records):
    """One transaction's records. Its writes wait in memory, and go in one
    statement before anything reads the table (``find``, ``count``) and at
    the end of the transaction; ``get`` reads a document once and answers
    again from what it read or was written, so a batch of messages that
    change the same documents reads and writes each once."""

    def __init__(
        self, cursor: Cursor[DictRow], store: Statements, *, locks: bool
    ) -> None:
        self.cursor = cursor
        self._sql = store.sql
        self.locks = locks
        self._known: dict[tuple[str, str], str | None] = {}
        """Each document read or written here, as JSON text (None: absent)."""
        self._written: dict[tuple[str, str], str] = {}
        """Documents to write, in the order first written."""
        self._deleted: set[tuple[str, str]] = set()
        """Documents to delete (before those written are written)."""

    def get(self, collection: str, key: str) -> Document | None:
        name = (collection, key)
        if name not in self._known:
            lock = " FOR UPDATE" if self.locks else ""
            row = self.cursor.execute(
                self._sql(
                    "SELECT doc::text AS doc FROM {records} "
                    "WHERE collection = %s AND key = %s" + lock
                ),
                name,
                prepare=True,
            ).fetchone()
            self._known[name] = None if row is None else row["doc"]
        text = self._known[name]
        return None if text is None else dict(json.loads(text))

    def put(self, collection: str, key: str, doc: Mapping[str, Any]) -> None:
        name = (collection, key)
        self._known[name] = self._written[name] = json_text(doc)

    def delete(self, collection: str, key: str) -> None:
        name = (collection, key)
        self._known[name] = None
        self._written.pop(name, None)
        self._deleted.add(name)

    def flush(self) -> None:
        """Write what waits: deletions first, so that a document deleted and
        written again takes its new place in the order first written."""
        if self._deleted:
            collections, keys = zip(*self._deleted, strict=True)
            self.cursor.execute(
                self._sql(
                    "DELETE FROM {records} WHERE (collection, key) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::text[]))"
                ),
                (list(collections), list(keys)),
            )
            self._deleted.clear()
        if self._written:
            collections, keys = zip(*self._written, strict=True)
            self.cursor.execute(
                self._sql(
                    "INSERT INTO {records} (collection, key, doc) "
                    "SELECT c, k, d FROM unnest(%s::text[], %s::text[], %s::jsonb[]) "
                    "WITH ORDINALITY AS w (c, k, d, n) ORDER BY n "
                    "ON CONFLICT (collection, key) DO UPDATE SET doc = excluded.doc"
                ),
                (list(collections), list(keys), list(self._written.values())),
                prepare=True,
            )
            self._written.clear()

    def _where(
        self, collection: str, where: Mapping[str, Any] | None
    ) -> tuple[sql.Composed, list[Any]]:
        clause = self._sql(" FROM {records} WHERE collection = %s")
        params: list[Any] = [collection]
        fields = scalar_filter(where)
        if fields:
            clause += sql.SQL(" AND doc @> %s::jsonb")
            params.append(json.dumps(fields))
        return clause, params

    def find(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        *,
        order_by: str | None = None,
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Document]:
        self.flush()
        clause, params = self._where(collection, where)
        direction = sql.SQL("DESC" if descending else "ASC")
        if order_by is None:
            order = sql.SQL(" ORDER BY seq {}").format(direction)
        else:
            order = sql.SQL(" ORDER BY doc -> %s {} NULLS LAST, seq").format(direction)
            params.append(order_by)
        query = sql.SQL("SELECT doc") + clause + order
        query += sql.SQL(" LIMIT %s OFFSET %s")
        params.extend([limit, offset])
        if self.locks:
            query += sql.SQL(" FOR UPDATE SKIP LOCKED")
        rows = self.cursor.execute(query, params).fetchall()
        return [dict(row["doc"]) for row in rows]

    def count(self, collection: str, where: Mapping[str, Any] | None = None) -> int:
        self.flush()
        clause, params = self._where(collection, where)
        row = self.cursor.execute(
            sql.SQL("SELECT count(*) AS n") + clause, params
        ).fetchone()
        return int(row["n"]) if row else 0

    def first_delivery(self, consumer: str, message_id: str) -> bool:
        self.cursor.execute(
            self._sql(
                "INSERT INTO {processed} (consumer, message_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING"
            ),
            (consumer, message_id),
            prepare=True,
        )
        return self.cursor.rowcount == 1

    def first_deliveries(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        # In order of id, so that concurrent batches lock them in one order.
        rows = self.cursor.execute(
            self._sql(
                "INSERT INTO {processed} (consumer, message_id) "
                "SELECT %s, id FROM unnest(%s::text[]) AS id ORDER BY id "
                "ON CONFLICT DO NOTHING RETURNING message_id"
            ),
            (consumer, list(message_ids)),
            prepare=True,
        ).fetchall()
        return {row["message_id"] for row in rows}

    def processed_at(
        self, consumer: str, message_ids: Sequence[str]
    ) -> dict[str, datetime]:
        rows = self.cursor.execute(
            self._sql(
                "SELECT message_id, processed_at FROM {processed} "
                "WHERE consumer = %s AND message_id = ANY(%s)"
            ),
            (consumer, list(message_ids)),
        ).fetchall()
        return {row["message_id"]: row["processed_at"] for row in rows}


class PostgresRecordStore(RecordStore):
    """Records of the store ``name`` (table ``<name>_records``) in ``schema``
    of the configured database (created if missing); ``durable=False`` for
    documents that can be rebuilt (see :mod:`ordersys.readmodels.records`)."""

    def __init__(
        self, settings: Settings, schema: str, name: str, *, durable: bool = True
    ) -> None:
        self.durable = durable
        self._asynchronous: weakref.WeakSet[Connection[DictRow]] = weakref.WeakSet()
        ensure_schema(settings, schema)
        self.datastore = PostgresDatastore(
            dbname=settings.postgres_dbname,
            host=settings.postgres_host,
            port=settings.postgres_port,
            user=settings.postgres_user,
            password=settings.postgres_password.get_secret_value(),
            connect_timeout=settings.postgres_connect_timeout,
            pool_size=1,  # one consumer thread; readers borrow the overflow
            max_overflow=settings.postgres_max_overflow,
            schema=schema,
        )
        self.statements = Statements(schema, name)
        with (
            creating_tables(settings, schema),
            self.datastore.transaction(commit=True) as cursor,
        ):
            cursor.execute(self.statements.sql(TABLES))

    @contextmanager
    def _transaction(self, *, commit: bool) -> Iterator[Records]:
        with self.datastore.transaction(commit=commit) as cursor:
            connection = cursor.connection
            unset = not self.durable and connection not in self._asynchronous
            if commit and unset:
                cursor.execute("SET synchronous_commit = off")
            records = PostgresRecords(cursor, self.statements, locks=commit)
            yield records
            if commit:
                records.flush()
        if commit and unset:
            self._asynchronous.add(connection)

    def transaction(self) -> AbstractContextManager[Records]:
        return self._transaction(commit=True)

    def reading(self) -> AbstractContextManager[Records]:
        return self._transaction(commit=False)

    def close(self) -> None:
        self.datastore.close()
