"""Leases on the real PostgreSQL: session advisory locks that one session holds
at a time, and that a killed or cut-off process loses at once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ordersys.leases import Leases
from ordersys.persistence.database import connect
from ordersys.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TAKEOVER_SECONDS = 10.0


@pytest.fixture
def opened(pg_settings: Settings) -> Iterator[list[Leases]]:
    """The leases a test opens, closed afterwards."""
    opened: list[Leases] = []
    yield opened
    for leases in opened:
        leases.close()


def leases_of(settings: Settings, opened: list[Leases], worker: str = "") -> Leases:
    leases = Leases(settings, worker or f"test {uuid.uuid4().hex[:8]}")
    opened.append(leases)
    return leases


def claimed_within(leases: Leases, name: str, seconds: float) -> float | None:
    """Seconds it took ``leases`` to claim ``name``, retrying every 0.1 s."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if leases.claim(name):
            return time.monotonic() - began
        time.sleep(0.1)
    return None


def test_two_sessions_cannot_both_hold_a_lease(
    pg_settings: Settings, opened: list[Leases]
) -> None:
    # Given two processes' leases, the first holding "relay:Bank"
    first, second = leases_of(pg_settings, opened), leases_of(pg_settings, opened)
    assert first.claim("relay:Bank")

    # When the second claims it, and the first claims it again
    refused = second.claim("relay:Bank")
    again = first.claim("relay:Bank")

    # Then the second is refused, and the first still holds it (claims do not stack)
    assert not refused
    assert again
    assert first.held() == {"relay:Bank"}
    assert second.held() == frozenset()

    # And once the first releases it, the second can claim it
    first.release("relay:Bank")
    assert first.held() == frozenset()
    assert second.claim("relay:Bank")
    assert second.held() == {"relay:Bank"}


def test_leases_of_other_schemas_are_other_leases(
    pg_settings: Settings, opened: list[Leases]
) -> None:
    # Given a lease held in this deployment's schema
    assert leases_of(pg_settings, opened).claim("relay:Bank")

    # When a deployment in another schema of the database claims the same name
    elsewhere = pg_settings.model_copy(update={"postgres_schema": "test_elsewhere"})

    # Then it holds its own lease
    assert leases_of(elsewhere, opened).claim("relay:Bank")


def test_holders_counts_the_sessions_that_hold_any_of_the_names(
    pg_settings: Settings, opened: list[Leases]
) -> None:
    # Given three processes: one holds two partitions, one holds one, one none
    a, b, c = (leases_of(pg_settings, opened) for _ in range(3))
    assert a.claim("saga:0")
    assert a.claim("saga:1")
    assert b.claim("saga:2")
    partitions = [f"saga:{n}" for n in range(4)]

    # Then two sessions hold partitions, one of them holds saga:0 and saga:1
    assert c.holders(partitions) == 2
    assert c.holders(["saga:0", "saga:1"]) == 1
    assert c.holders(["saga:3"]) == 0

    # And when the first releases its partitions, only one holds any
    a.release("saga:0")
    a.release("saga:1")
    assert a.holders(partitions) == 1


def test_a_lease_of_a_process_killed_with_sigkill_is_claimed_by_another(
    pg_settings: Settings, opened: list[Leases]
) -> None:
    # Given a process that holds "relay:Bank", and another that is refused it
    worker = [sys.executable, "-m", "tests.integration.lease_worker"]
    worker += [pg_settings.postgres_schema, "relay:Bank"]
    process = subprocess.Popen(worker, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    survivor = leases_of(pg_settings, opened)
    assert not survivor.claim("relay:Bank")

    # When the holder is killed with -9
    process.send_signal(signal.SIGKILL)
    process.wait()

    # Then the other claims the lease within 10 s, and counts it a takeover
    seconds = claimed_within(survivor, "relay:Bank", TAKEOVER_SECONDS)
    print(f"lease claimed {seconds} s after the kill")
    assert seconds is not None
    assert survivor.takeovers == 1


def test_a_dropped_connection_loses_every_lease(
    pg_settings: Settings, opened: list[Leases]
) -> None:
    # Given a process holding two leases, and another that waits for one
    worker = f"dropped {uuid.uuid4().hex[:8]}"
    dropped = leases_of(pg_settings, opened, worker)
    other = leases_of(pg_settings, opened)
    assert dropped.claim("relay:Bank")
    assert dropped.claim("projection:balances")
    assert not other.claim("relay:Bank")

    # When the server ends its lease session
    with connect(pg_settings, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (f"ordersys leases {worker}",),
        )

    # Then it holds nothing any more, and the other claims the lease
    assert dropped.held() == frozenset()
    assert other.claim("relay:Bank")
    assert other.takeovers == 1

    # And the first, connecting again, claims what is free, and not what is not
    assert dropped.claim("projection:balances")
    assert not dropped.claim("relay:Bank")
    assert dropped.held() == {"projection:balances"}
    assert dropped.takeovers == 0
