"""Event store benchmark: appends/s and catch-up reads/s on the real PostgreSQL.

``python -m bench eventstore [--events 1000000] [--seconds 3] [--threads 1,4,16]``

In one run against the same server it measures, with 1, 4 and 16 writer
threads, the appends per second of

  (a) plain single-row INSERT commits from psycopg (what the database can do),
  (b) the stock ``eventsourcing.postgres`` recorder,
  (c) ordersys' recorder (``ordersys.persistence.recorders``),

each append being a new aggregate with one event; then, over ``--events``
stored events, a raw keyset scan from psycopg beside a subscription from
position 0 whose notifications are turned into domain events by the library's
mapper or ordersys' (``ordersys.persistence.mapper``), with the CPU this
process spends per event and, of that, in the garbage collector.
Everything lives in a schema of its own in the database ``ordersys_bench``,
dropped at the end.
"""

from __future__ import annotations

import argparse
import gc
import math
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
from ordersys.persistence.mapper import FastMapper, OrjsonTranscoder
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
    """The library's mapper, with the transcodings applications register."""
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


def make_ordersys_mapper() -> Mapper[Any]:
    """The mapper ordersys applications on PostgreSQL get from its factory."""
    transcoder = OrjsonTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return FastMapper(transcoder=transcoder)


def sample_event(mapper: Mapper[Any]) -> StoredEvent:
    item = Item("a widget of some kind", Decimal("19.99"), 12)
    return mapper.to_stored_event(item.collect_events()[0])


Figures = tuple[float, float, float]
"""Items per second, then CPU of this process and, of that, garbage collection,
in microseconds per item."""


def measured(work: Callable[[], int]) -> Figures:
    """Run ``work`` (which returns how many items it handled) and measure it."""
    collecting: list[float] = []
    collected = [0.0]

    def on_gc(phase: str, _: dict[str, Any]) -> None:
        if phase == "start":
            collecting.append(time.thread_time())
        elif collecting:
            collected[0] += time.thread_time() - collecting.pop()

    gc.callbacks.append(on_gc)
    try:
        cpu, began = time.process_time(), time.perf_counter()
        items = work()
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu
    finally:
        gc.callbacks.remove(on_gc)
    items = max(items, 1)
    return items / elapsed, cpu / items * 1e6, collected[0] / items * 1e6


def run_threads(
    threads: int,
    seconds: float,
    append: Callable[[int], None],
    server_cpu: Callable[[], float] = lambda: math.nan,
) -> Figures:
    """Appends per second of ``threads`` threads calling ``append(thread index)``
    for ``seconds``, after one untimed call each (connections, prepared
    statements); then the CPU of this process and of the server (as
    ``server_cpu`` counts it, in seconds), in microseconds per append."""
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
    server, cpu, began = server_cpu(), time.process_time(), time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    cpu, server = time.process_time() - cpu, server_cpu() - server
    appends = max(sum(counts), 1)
    return appends / elapsed, cpu / appends * 1e6, server / appends * 1e6


class Bench:
    def __init__(self, settings: Settings, schema: str) -> None:
        self.settings = settings
        self.schema = schema
        self.mapper = make_mapper()
        self.ordersys_mapper = make_ordersys_mapper()
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

    def server_cpu(self) -> float:
        """CPU seconds used so far by the client backends of the benchmark's
        database (from /proc: NaN unless PostgreSQL runs on this machine; the
        WAL writer, checkpointer and autovacuum are left out)."""
        with connect(self.settings, autocommit=True) as conn:
            pids = conn.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            ).fetchall()
        total = 0
        for (pid,) in pids:
            try:
                with open(f"/proc/{pid}/schedstat") as stat:
                    total += int(stat.read().split()[0])
            except (OSError, ValueError, IndexError):
                return math.nan
        return total / 1e9

    def plain_inserts(self, threads: int, seconds: float) -> Figures:
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
            return run_threads(threads, seconds, append, self.server_cpu)
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
    ) -> Figures:
        datastore = self.datastore(
            reuse_recent=issubclass(recorder_class, PostgresEventRecorder)
        )
        table = f"{recorder_class.__name__.lower()}_{threads}_events"
        recorder = recorder_class(datastore, events_table_name=table)
        recorder.create_table()
        datastore.pool.wait()  # every connection of the pool is open
        try:
            return run_threads(
                threads,
                seconds,
                lambda _: recorder.insert_events([self.new_event()]),
                self.server_cpu,
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

    def raw_scan(self, table: str, count: int, binary: bool) -> Figures:
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(sql.Identifier(self.schema, table))
        with connect(self.settings, autocommit=True) as conn:

            def scan() -> int:
                seen, last = 0, 0
                while seen < count:
                    rows = conn.execute(
                        query, (last, PAGE), prepare=True, binary=binary
                    ).fetchall()
                    if not rows:
                        break
                    seen += len(rows)
                    last = rows[-1][0]
                return seen

            return measured(scan)

    def mapper_only(self, mapper: Mapper[Any], count: int) -> Figures:
        """Domain events/s ``mapper`` makes of notifications already in memory."""
        sample = Notification(
            id=1,
            originator_id=uuid.uuid4(),
            originator_version=1,
            topic=self.sample.topic,
            state=self.sample.state,
        )
        batch = [sample] * min(count, 100_000)

        def map_all() -> int:
            for notification in batch:
                mapper.to_domain_event(notification)
            return len(batch)

        return measured(map_all)

    def pages(self, recorder: ApplicationRecorder, count: int) -> Figures:
        """Rows/s of the recorder's own select_notifications, page after page."""

        def read() -> int:
            seen, last = 0, 0
            while seen < count:
                page = recorder.select_notifications(
                    last, PAGE, inclusive_of_start=False
                )
                if not page:
                    break
                seen += len(page)
                last = page[-1].id
            return seen

        return measured(read)

    def catch_up(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        count: int,
        frozen: bool = False,
    ) -> Figures:
        """Domain events/s of a subscription from position 0 through ``mapper``;
        ``frozen``: with the objects of the process moved out of the garbage
        collector's way first (``gc.freeze()``), as a long-running process
        may do after start-up."""
        to_domain_event = mapper.to_domain_event

        def follow() -> int:
            seen = 0
            with recorder.subscribe(gt=0) as subscription:
                for notification in subscription:
                    to_domain_event(notification)
                    seen += 1
                    if seen == count:
                        break
            return seen

        if not frozen:
            return measured(follow)
        gc.freeze()
        try:
            return measured(follow)
        finally:
            gc.unfreeze()


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
    costs = []
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
            tuple(statistics.median(run[k] for run in column) for k in range(3))
            for column in zip(*runs, strict=True)
        )
        print(
            f"{threads:>8} {plain[0]:>11.0f} {stock[0]:>10.0f} {ours[0]:>13.0f}"
            f" {ours[0] / plain[0]:>6.0%} {ours[0] / stock[0]:>6.1f}x",
            flush=True,
        )
        costs.append((threads, plain, ours))
    print(
        "\nCPU µs per append (medians; client: this process, server: the"
        " PostgreSQL backends\nof the benchmark's database), which the load of"
        " the machine moves less; a/c: the\nrate of (c) relative to (a) if CPU"
        " were all that limits both"
    )
    print(
        f"{'threads':>8} {'(a) client':>11} {'(a) server':>11}"
        f" {'(c) client':>11} {'(c) server':>11} {'a/c':>6}"
    )
    for threads, plain, ours in costs:
        print(
            f"{threads:>8} {plain[1]:>11.0f} {plain[2]:>11.0f}"
            f" {ours[1]:>11.0f} {ours[2]:>11.0f}"
            f" {(plain[1] + plain[2]) / (ours[1] + ours[2]):>6.0%}"
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
        raw = max(text[0], binary[0])
        print(
            f"  {'':<44} {'rate':>9}         {'':>11}"
            f" {'CPU µs/item':>11} {'of it GC':>9}"
        )
        for name, figures, unit in (
            ("raw keyset scan, psycopg text", text, "rows"),
            ("raw keyset scan, psycopg binary", binary, "rows"),
            (
                "library mapper alone, no database",
                bench.mapper_only(bench.mapper, count),
                "events",
            ),
            (
                "ordersys mapper alone, no database",
                bench.mapper_only(bench.ordersys_mapper, count),
                "events",
            ),
            ("ordersys select_notifications", bench.pages(recorder, count), "rows"),
            (
                "stock subscription + library mapper",
                bench.catch_up(stock, bench.mapper, count),
                "events",
            ),
            (
                "ordersys subscription + library mapper",
                bench.catch_up(recorder, bench.mapper, count),
                "events",
            ),
            (
                "ordersys subscription + ordersys mapper",
                bench.catch_up(recorder, bench.ordersys_mapper, count),
                "events",
            ),
            (
                "  the same after gc.freeze()",
                bench.catch_up(recorder, bench.ordersys_mapper, count, frozen=True),
                "events",
            ),
        ):
            rate, cpu, collecting = figures
            print(
                f"  {name:<44} {rate:>9,.0f} {unit}/s  {rate / raw:>5.0%} of raw"
                f" {cpu:>11.2f} {collecting:>9.2f}",
                flush=True,
            )
    finally:
        datastore.close()
