"""Sagas across replicas, on the real PostgreSQL: two runners of one process
manager, each its own process, share the sagas by partitions; when one is
killed (-9), the other takes its partitions over and every saga completes.

The runners are ``tests.integration.saga_worker`` processes; what they sent
is read from their logs, which they write before sending.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ordersys.settings import Settings
from tests.unit.bookings import Booking, Bookings, Hold, HoldExpiry

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 16
WAIT = 60.0


class Replica:
    """A saga runner process, and what it says of itself."""

    def __init__(self, schema: str, name: str, out: Path) -> None:
        self.name, self.out = name, out
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.saga_worker",
                schema,
                name,
                str(out),
            ],
            cwd=ROOT,
        )

    def owned(self) -> set[int]:
        status = self.out / f"{self.name}.json"
        if not status.exists():
            return set()
        return set(json.loads(status.read_text())["owned"])

    def sent(self) -> list[tuple[str, str, str]]:
        log = self.out / f"{self.name}.sent"
        if not log.exists():
            return []
        lines = log.read_text().split("\n")[:-1]  # a line being written: not yet
        return [tuple(line.split()[:3]) for line in lines]  # type: ignore[misc]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def replicas(pg_settings: Settings, tmp_path: Path) -> Iterator[list[Replica]]:
    schema = pg_settings.postgres_schema
    # The tables exist before two processes would both create them.
    HoldExpiry(pg_settings)
    Bookings(pg_settings)
    started = [Replica(schema, name, tmp_path) for name in ("a", "b")]
    yield started
    for replica in started:
        if replica.process.poll() is None:
            replica.kill()


def wait_for(what: str, done: Callable[[], bool]) -> float:
    """Seconds until ``done()``; fails after WAIT."""
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > WAIT:
            pytest.fail(f"{what}: not within {WAIT} s")
        time.sleep(0.05)
    return time.monotonic() - start


def split(replicas: list[Replica]) -> bool:
    a, b = (r.owned() for r in replicas)
    return len(a) == len(b) == PARTITIONS // 2 and not a & b


def sends(replicas: list[Replica]) -> Counter[tuple[str, str]]:
    """How many times each booking's command of each type was sent, in all."""
    return Counter((t, b) for r in replicas for t, b, _ in r.sent())


def book(bookings: Bookings, count: int) -> list[Booking]:
    made = [Booking("concert") for _ in range(count)]
    for booking in made:
        bookings.write(booking)
    return made


def pay(bookings: Bookings, made: list[Booking]) -> None:
    for booking in made:
        booking.pay()
        bookings.write(booking)


def confirmed(replicas: list[Replica], made: list[Booking]) -> Callable[[], bool]:
    ids = {str(b.id) for b in made}
    return lambda: {b for t, b in sends(replicas) if t == "seats.confirm"} >= ids


def assert_completed(settings: Settings, made: list[Booking]) -> None:
    expiry = HoldExpiry(settings)
    statuses = Counter(
        getattr(expiry.saga(Hold, booking.id), "status", None) for booking in made
    )
    assert statuses == {"completed": len(made)}


def test_two_replicas_share_the_partitions_and_the_sagas(
    pg_settings: Settings, replicas: list[Replica]
) -> None:
    # Given two runners of the hold process, each in its own process
    settings_up = wait_for("an even split", lambda: split(replicas))
    print(f"split in {settings_up:.1f} s:", [sorted(r.owned()) for r in replicas])
    bookings = Bookings(pg_settings)

    # When bookings are made and paid
    made = book(bookings, 200)
    wait_for("every hold", lambda: len(sends(replicas)) == len(made))
    pay(bookings, made)
    wait_for("every confirmation", confirmed(replicas, made))

    # Then each replica handled a share of the sagas, every saga completed,
    # and each command was sent once per saga
    handled = [len({b for _, b, _ in r.sent()}) for r in replicas]
    print("sagas handled by each replica:", handled)
    assert all(handled)
    assert sum(handled) == len(made)
    assert_completed(pg_settings, made)
    assert set(sends(replicas).values()) == {1}
    assert len(sends(replicas)) == 2 * len(made)


def test_a_killed_replicas_partitions_are_taken_over_and_no_step_is_lost(
    pg_settings: Settings, replicas: list[Replica]
) -> None:
    # Given two runners sharing the partitions, with sagas under way
    wait_for("an even split", lambda: split(replicas))
    victim, survivor = replicas
    bookings = Bookings(pg_settings)
    made = book(bookings, 100)
    wait_for("holds sent by the victim", lambda: len(victim.sent()) >= 10)

    # When one is killed (-9) in the middle, and more bookings come
    victims_partitions = victim.owned()
    victim.kill()
    takeover = wait_for("the takeover", lambda: len(survivor.owned()) == PARTITIONS)
    print(f"the survivor owned every partition {takeover:.1f} s after the kill")
    made += book(bookings, 100)
    pay(bookings, made)
    wait_for("every confirmation", confirmed(replicas, made))

    # Then every saga completed, and a command went twice only if the victim
    # sent it without recording its reply (a step in flight at the kill),
    # the second time from the survivor
    assert_completed(pg_settings, made)
    counts = sends(replicas)
    assert {t for t, _ in counts} == {"seats.hold", "seats.confirm"}
    assert len(counts) == 2 * len(made)
    twice = {key for key, n in counts.items() if n > 1}
    print(f"commands sent once: {len(counts) - len(twice)}, twice: {len(twice)}")
    assert set(counts.values()) <= {1, 2}
    victims = Counter((t, b) for t, b, _ in victim.sent())
    survivors = Counter((t, b) for t, b, _ in survivor.sent())
    assert all(victims[key] == 1 and survivors[key] == 1 for key in twice)
    assert len(victims_partitions) == PARTITIONS // 2
