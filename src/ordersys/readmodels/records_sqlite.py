"""A record store in SQLite, for the embedded mode.

One connection per store (:class:`~ordersys.persistence.sqlite.Database`); a
write transaction starts with ``BEGIN IMMEDIATE``, which takes SQLite's write
lock at once, so transactions are serializable and a document read there
cannot change under the reader (the locks of the port's contract).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

from ordersys.persistence.database import schema_name
from ordersys.persistence.sqlite import Database, json_equal, json_order
from ordersys.readmodels.records import (
    Records,
    RecordStore,
    json_text,
    scalar_filter,
)
from ordersys.readmodels.store import Document

TABLES = """
CREATE TABLE IF NOT EXISTS "{records}" (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL,
    UNIQUE (collection, key));
CREATE TABLE IF NOT EXISTS ordersys_processed_messages (
    consumer TEXT NOT NULL, message_id TEXT NOT NULL, processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, message_id));
"""


class SQLiteRecords(Records):
    def __init__(self, cursor: sqlite3.Cursor, table: str) -> None:
        self.cursor = cursor
        self.table = table

    def get(self, collection: str, key: str) -> Document | None:
        row = self.cursor.execute(
            f"SELECT doc FROM {self.table} WHERE collection = ? AND key = ?",
            (collection, key),
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put(self, collection: str, key: str, doc: Mapping[str, Any]) -> None:
        self.cursor.execute(
            f"INSERT INTO {self.table} (collection, key, doc) VALUES (?, ?, ?) "
            "ON CONFLICT (collection, key) DO UPDATE SET doc = excluded.doc",
            (collection, key, json_text(doc)),
        )

    def delete(self, collection: str, key: str) -> None:
        self.cursor.execute(
            f"DELETE FROM {self.table} WHERE collection = ? AND key = ?",
            (collection, key),
        )

    def _where(
        self, collection: str, where: Mapping[str, Any] | None
    ) -> tuple[str, list[Any]]:
        clause, params = json_equal(scalar_filter(where))
        return "WHERE collection = ?" + clause, [collection, *params]

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
        clause, params = self._where(collection, where)
        if order_by is None:
            order = "seq DESC" if descending else "seq"
        else:
            by_field, more = json_order(order_by, descending=descending)
            order, params = f"{by_field}, seq", [*params, *more]
        params.extend([-1 if limit is None else limit, offset])
        rows = self.cursor.execute(
            f"SELECT doc FROM {self.table} {clause} ORDER BY {order} LIMIT ? OFFSET ?",
            params,
        ).fetchall()
        return [dict(json.loads(row[0])) for row in rows]

    def count(self, collection: str, where: Mapping[str, Any] | None = None) -> int:
        clause, params = self._where(collection, where)
        row = self.cursor.execute(
            f"SELECT count(*) FROM {self.table} {clause}",
            params,
        ).fetchone()
        return int(row[0])

    def first_delivery(self, consumer: str, message_id: str) -> bool:
        self.cursor.execute(
            "INSERT INTO ordersys_processed_messages VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (consumer, message_id, datetime.now(UTC).isoformat()),
        )
        return self.cursor.rowcount == 1

    def first_deliveries(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        # One writer at a time (BEGIN IMMEDIATE): no other can race these.
        return {m for m in message_ids if self.first_delivery(consumer, m)}

    def processed_at(
        self, consumer: str, message_ids: Sequence[str]
    ) -> dict[str, datetime]:
        marks = ", ".join("?" for _ in message_ids)
        rows = self.cursor.execute(
            "SELECT message_id, processed_at FROM ordersys_processed_messages "
            f"WHERE consumer = ? AND message_id IN ({marks})",
            [consumer, *message_ids],
        ).fetchall()
        return {row[0]: datetime.fromisoformat(row[1]) for row in rows}


class SQLiteRecordStore(RecordStore):
    """Records of the store ``name`` (table ``<name>_records``) in the SQLite
    database at ``path`` (a file, or a ``file:`` URI)."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.table = f'"{schema_name(name)}_records"'
        self.database = Database(path)
        with self.database.transaction() as cursor:
            tables = TABLES.format(records=f"{schema_name(name)}_records")
            for statement in tables.split(";"):
                if statement.strip():
                    cursor.execute(statement)

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[Records]:
        with self.database.transaction(begin) as cursor:
            yield SQLiteRecords(cursor, self.table)

    def transaction(self) -> AbstractContextManager[Records]:
        return self._transaction("BEGIN IMMEDIATE")

    def reading(self) -> AbstractContextManager[Records]:
        return self._transaction("BEGIN")

    def close(self) -> None:
        self.database.close()
