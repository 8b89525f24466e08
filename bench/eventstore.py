"""Event store benchmark: appends/s and catch-up reads/s on the real PostgreSQL.

``python -m bench eventstore [--events 1000000] [--seconds 3] [--threads 1,4,16]``

In one run against the same server it measures, with 1, 4 and 16 writer
threads, the appends per second of

  (a) plain single-row INSERT commits from psycopg (what the database can do),
  (b) the stock ``eventsourcing.postgres`` recorder,
  (c) ordersys' recorder (``ordersys.persistence.recorders``),

each append being a new aggregate with one event; then, over ``--events``
stored events, a raw keyset scan from psycopg beside a subscription from
position 0 whose notifications are turned into domain events by the mapper.
Everything lives in a schema of its own in the database ``ordersys_bench``,
dropped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from eventsourcing.persistence import (
    ApplicationRecorder,
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    Notification,
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import sql

from ordersys import Aggregate, event
from ordersys.persistence.database import connect, ensure_database
from ordersys.persistence.pool import reuse_recent_connections
from ordersys.persistence.recorders import PostgresEventRecorder
from ordersys.settings import Settings, load_settings

PAGE = 500


class Item(Aggregate):
    @event("Registered")
    def __init__(self, name: str, price: Decimal, stock: int) -> None:
        self.name = name
        self.price = price
        self.stock = stock


def make_mapper() -> Mapper[Any]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


def sample_event(mapper: Mapper[Any]) -> StoredEvent:
    item = Item("a widget of some kind", Decimal("19.99"), 12)
    return mapper.to_stored_event(item.collect_events()[0])


def run_threads(threads: int, seconds: float, append: Callable[[int], None]) -> float:
    """Appends per second of ``threads`` threads calling ``append(thread index)``
    for ``seconds``, after one untimed call each (connections, prepared
    statements)."""
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def work(i: int) -> None:
        append(i)
        start.wait()
        while not stop.is_set():
            append(i)
            counts[i] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - began)


class Bench:
    def __init__(self, settings: Settings, schema: str) -> None:
        self.settings = settings
        self.schema = schema
        self.mapper = make_mapper()
        self.sample = sample_event(self.mapper)

    def datastore(self, reuse_recent: bool = False) -> PostgresDatastore:
        """A datastore as the stock factory makes it, or as ordersys' does."""
        datastore = PostgresDatastore(
            dbname=self.settings.postgres_dbname,
            host=self.settings.postgres_host,
            port=self.settings.postgres_port,
            user=self.settings.postgres_user,
            password=self.settings.postgres_password.get_secret_value(),
            schema=self.schema,
            pool_size=17,
        )
        if reuse_recent:
            reuse_recent_connections(datastore)
        return datastore

    def new_event(self) -> StoredEvent:
        return StoredEvent(uuid.uuid4(), 1, self.sample.topic, self.sample.state)

    def plain_inserts(self, threads: int, seconds: float) -> float:
        table = sql.Identifier(self.schema, "plain_events")
        with connect(self.settings, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (originator_id uuid, originator_version bigint,"
                    " topic text, state bytea, notification_id bigserial UNIQUE,"
                    " PRIMARY KEY (originator_id, originator_version))"
                ).format(table)
            )
        insert = sql.SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state)"
            " VALUES (%s, %s, %s, %s)"
        ).format(table)
        connections = [connect(self.settings, autocommit=True) for _ in range(threads)]

        def append(i: int) -> None:
            e = self.new_event()
            connections[i].execute(
                insert,
                (e.originator_id, e.originator_version, e.topic, e.state),
                prepare=True,
            )

        try:
            return run_threads(threads, seconds, append)
        finally:
            for conn in connections:
                conn.close()
            with connect(self.settings, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP TABLE {}").format(table))

    def recorder_appends(
        self,
        recorder_class: type[PostgresApplicationRecorder],
        threads: int,
        seconds: float,
    ) -> float:
        datastore = self.datastore(reuse_recent=recorder_class is PostgresEventRecorder)
        table = f"{recorder_class.__name__.lower()}_{threads}_events"
        recorder = recorder_class(datastore, events_table_name=table)
        recorder.create_table()
        datastore.pool.wait()  # every connection of the pool is open
        try:
            return run_threads(
                threads, seconds, lambda _: recorder.insert_events([self.new_event()])
            )
        finally:
            datastore.close()

    def load(self, recorder: PostgresEventRecorder, count: int) -> None:
        """Store ``count`` events at once, as if appended long ago."""
        table = sql.Identifier(self.schema, recorder.events_table_name)
        with connect(self.settings, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (originator_id, originator_version, topic, state,"
                    " notification_id, transaction_id)"
                    " SELECT gen_random_uuid(), 1, %s, %s, n, '3'::xid8"
                    " FROM generate_series(1, %s) AS n"
                ).format(table),
                (self.sample.topic, self.sample.state, count),
            )
            conn.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'notification_id'), %s)",
                (f"{self.schema}.{recorder.events_table_name}", count),
            )
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))

    def raw_scan(self, table: str, count: int, binary: bool) -> float:
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(sql.Identifier(self.schema, table))
        seen, last = 0, 0
        with connect(self.settings, autocommit=True) as conn:
            began = time.perf_counter()
            while seen < count:
                rows = conn.execute(
                    query, (last, PAGE), prepare=True, binary=binary
                ).fetchall()
                if not rows:
                    break
                seen += len(rows)
                last = rows[-1][0]
            return seen / (time.perf_counter() - began)

    def mapper_only(self, count: int) -> float:
        """Domain events/s the mapper makes of notifications already in memory."""
        sample = Notification(
            id=1,
            originator_id=uuid.uuid4(),
            originator_version=1,
            topic=self.sample.topic,
            state=self.sample.state,
        )
        batch = [sample] * min(count, 100_000)
        began = time.perf_counter()
        for notification in batch:
            self.mapper.to_domain_event(notification)
        return len(batch) / (time.perf_counter() - began)

    def pages(self, recorder: ApplicationRecorder, count: int) -> float:
        """Rows/s of the recorder's own select_notifications, page after page."""
        seen, last = 0, 0
        began = time.perf_counter()
        while seen < count:
            page = recorder.select_notifications(last, PAGE, inclusive_of_start=False)
            if not page:
                break
            seen += len(page)
            last = page[-1].id
        return seen / (time.perf_counter() - began)

    def catch_up(self, recorder: ApplicationRecorder, count: int) -> float:
        seen = 0
        began = time.perf_counter()
        with recorder.subscribe(gt=0) as subscription:
            for notification in subscription:
                self.mapper.to_domain_event(notification)
                seen += 1
                if seen == count:
                    break
        return seen / (time.perf_counter() - began)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench eventstore")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,4,16")
    args = parser.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")]

    settings = load_settings({"postgres_dbname": "ordersys_bench"})
    ensure_database(settings)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with connect(settings, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    bench = Bench(settings, schema)
    try:
        report_appends(bench, thread_counts, args.seconds, args.rounds)
        report_catch_up(bench, args.events)
    finally:
        with connect(settings, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema))
            )
    return 0


def report_appends(
    bench: Bench, thread_counts: list[int], seconds: float, rounds: int
) -> None:
    print(
        f"Appends/s (a new aggregate with one event each): median of {rounds}"
        f" interleaved rounds of {seconds:g} s per system"
    )
    print(
        f"{'threads':>8} {'(a) INSERT':>11} {'(b) stock':>10} {'(c) ordersys':>13}"
        f" {'c/a':>6} {'c/b':>7}"
    )
    for threads in thread_counts:
        # Interleaved, so that the load of a shared machine hits all alike.
        runs = [
            (
                bench.plain_inserts(threads, seconds),
                bench.recorder_appends(PostgresApplicationRecorder, threads, seconds),
                bench.recorder_appends(PostgresEventRecorder, threads, seconds),
            )
            for _ in range(rounds)
        ]
        plain, stock, ours = (
            statistics.median(column) for column in zip(*runs, strict=True)
        )
        print(
            f"{threads:>8} {plain:>11.0f} {stock:>10.0f} {ours:>13.0f}"
            f" {ours / plain:>6.0%} {ours / stock:>6.1f}x",
            flush=True,
        )


def report_catch_up(bench: Bench, count: int) -> None:
    datastore = bench.datastore(reuse_recent=True)
    table = "catch_up_events"
    recorder = PostgresEventRecorder(datastore, events_table_name=table)
    recorder.create_table()
    # The stock recorder reads the same rows (it ignores the extra column).
    stock = PostgresApplicationRecorder(datastore, events_table_name=table)
    try:
        began = time.perf_counter()
        bench.load(recorder, count)
        print(
            f"\nCatch-up over {count:,} events (loaded in "
            f"{time.perf_counter() - began:.1f} s), pages of {PAGE}"
        )
        text = bench.raw_scan(table, count, binary=False)
        binary = bench.raw_scan(table, count, binary=True)
        raw = max(text, binary)
        figures = [
            ("raw keyset scan, psycopg text", text, "rows"),
            ("raw keyset scan, psycopg binary", binary, "rows"),
            ("mapper alone, no database", bench.mapper_only(count), "events"),
            ("ordersys select_notifications", bench.pages(recorder, count), "rows"),
            ("stock subscription + mapper", bench.catch_up(stock, count), "events"),
            (
                "ordersys subscription + mapper",
                bench.catch_up(recorder, count),
                "events",
            ),
        ]
        for name, rate, unit in figures:
            print(f"  {name:<32} {rate:>9,.0f} {unit}/s  {rate / raw:>5.0%} of raw")
    finally:
        datastore.close()
