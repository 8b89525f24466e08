"""SQLite for the embedded mode: where its databases live, and the one
connection per database that ordersys' own SQLite stores share."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ordersys.persistence.database import schema_name
from ordersys.settings import Settings


def sqlite_file(settings: Settings, name: str) -> str:
    """The SQLite database of ``name`` (an application, a read model, a record
    store) under ``ORDERSYS_SQLITE_PATH``.

    ``:memory:`` gives each name a database in memory shared by everything in
    this process that opens it; a directory gives each name a file of its own
    there (``<dir>/<name>.sqlite``, tables of different owners never meet);
    any other path is one file for everything.
    """
    path = settings.sqlite_path
    if path == ":memory:":
        return f"file:ordersys_{schema_name(name)}?mode=memory&cache=shared"
    if Path(path).is_dir():
        return str(Path(path) / f"{schema_name(name)}.sqlite")
    return path


class Database:
    """One SQLite connection, shared by this process' threads a transaction at
    a time (SQLite has one writer anyway); WAL for a file, so readers in other
    processes (``ordersys doctor``) are not blocked."""

    def __init__(self, path: str) -> None:
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            path,
            uri=path.startswith("file:"),
            check_same_thread=False,
            isolation_level=None,  # transactions are begun explicitly
            timeout=30,
        )
        if "mode=memory" not in path and path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")

    @contextmanager
    def transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Cursor]:
        """A transaction; ``BEGIN IMMEDIATE`` takes the write lock at once, so
        what it reads cannot change before it commits."""
        with self._lock:
            cursor = self._conn.cursor()
            cursor.execute(begin)
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(statement, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def json_path(field: str) -> str:
    """The JSON path of a document's top-level ``field``."""
    return '$."' + field.replace('"', '""') + '"'


def json_equal(where: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """`` AND ...`` clauses matching documents (column ``doc``) whose top-level
    fields equal the scalars of ``where``, and their parameters."""
    clause, params = "", []
    for field, value in where.items():
        if value is None:
            clause += " AND json_extract(doc, ?) IS NULL"
            params.append(json_path(field))
        else:
            clause += " AND json_extract(doc, ?) = ?"
            params.extend([json_path(field), value])
    return clause, params


def json_order(field: str, *, descending: bool) -> tuple[str, list[Any]]:
    """An ``ORDER BY`` start: by a top-level field, missing values last."""
    direction = "DESC" if descending else "ASC"
    path = json_path(field)
    return (
        f"json_extract(doc, ?) IS NULL, json_extract(doc, ?) {direction}",
        [path, path],
    )
