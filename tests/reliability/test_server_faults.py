"""The servers' own faults, each against private instances the test starts
and kills (the machine's servers are never touched): the broker killed with
kill -9 under load and seconds after start-up, PostgreSQL stopped at once
(``pg_ctl stop -m immediate``) for seconds and for half a minute, Redis killed
and restarted empty, a service frozen with SIGSTOP, and every server down
while the system starts. Orders flow through the gateway throughout, each
retried with its Idempotency-Key. Afterwards: no accepted order is lost, no
effect is applied twice, no dead letter is left by an outage, and the system
recovered by itself. Each fault's figures are printed."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import pytest

from tests.reliability.load import Load, applied_twice
from tests.reliability.private import (
    Fault,
    Servers,
    freeze,
    recovery_since,
    ride_out,
    settled,
)
from tests.system.system import System, eventually

# A private RabbitMQ takes seconds to boot, more on a busy machine.
pytestmark = pytest.mark.timeout(600)


def under_load(system: System, accepted: int = 3) -> Load:
    """Customers placing orders through the gateway, once ``accepted`` of
    their orders are."""
    products = [system.product(stock=100_000) for _ in range(2)]
    # Patient: a broker killed under this load takes its time to boot again.
    load = Load(system, products, workers=2, patience=180)
    load.start()
    eventually(lambda: len(load.accepted) >= accepted, within=60)
    return load


def ride_out_each(
    faults: list[tuple[str, Callable[[], None]]],
    system: System,
    servers: Servers,
    load: Load,
) -> list[Fault]:
    """Each fault in turn, once the system has recovered from the one before."""
    seen = []
    for name, inject in faults:
        before = servers.dead_letters()
        fault = ride_out(name, inject, system, load)
        time.sleep(2)  # orders flow for a while before the next fault
        fault.dead_letters = servers.dead_letters() - before
        seen.append(fault)
    return seen


def outcome(
    faults: list[Fault],
    system: System,
    servers: Servers,
    load: Load,
    capsys: pytest.CaptureFixture[str],
) -> list[Fault]:
    """Stop the load, wait for every accepted order to be final, and count per
    fault (the orders accepted from its start to the next one's) what was lost
    and what was applied twice; print the figures."""
    load.stop()
    final = settled(system, load.accepted, within=180)
    settings = servers.settings()
    ends = [f.began for f in faults[1:]] + [math.inf]
    for fault, end in zip(faults, ends, strict=True):
        fault.orders = [
            o
            for o, at in zip(load.accepted, load.accepted_at, strict=True)
            if fault.began <= at < end
        ]
        fault.lost = sum(o not in final for o in fault.orders)
        fault.doubled = applied_twice(
            system, settings, [final[o] for o in fault.orders if o in final]
        )
    with capsys.disabled():  # the figures belong in CI's output, pass or fail
        print()
        for fault in faults:
            print(f"server faults: {fault.line()}")
        print(
            f"server faults: {len(load.accepted)} orders accepted in all, "
            f"{len(load.accepted) - len(final)} not final, dead letters "
            f"{servers.dead_letters_by_queue()}, client-side failures retried: "
            f"{dict(load.failures)}"
        )
    return faults


def assert_came_through(faults: list[Fault], servers: Servers) -> None:
    assert [(f.name, f.lost, f.doubled, f.dead_letters) for f in faults] == [
        (f.name, 0, 0, 0) for f in faults
    ]
    assert servers.dead_letters() == 0
    assert servers.stuck() == {}


def test_broker_postgres_and_redis_faults_and_a_frozen_service_under_load(
    servers: Servers, private_system: System, capsys: pytest.CaptureFixture[str]
) -> None:
    servers.start()
    private_system.start()
    load = under_load(private_system)

    def kill_broker() -> None:
        servers.rabbitmq.kill()
        time.sleep(2)
        servers.rabbitmq.start()

    def stop_postgres() -> None:
        servers.postgres.stop("immediate")
        time.sleep(5)
        servers.postgres.start()

    def kill_redis() -> None:
        servers.redis.kill()
        time.sleep(1)
        servers.redis.start()

    faults = ride_out_each(
        [
            ("RabbitMQ kill -9", kill_broker),
            ("PostgreSQL stop -m immediate (5 s)", stop_postgres),
            ("Redis kill -9, restarted empty", kill_redis),
            ("orders SIGSTOP (15 s)", lambda: freeze(private_system, "orders", 15)),
        ],
        private_system,
        servers,
        load,
    )

    assert_came_through(outcome(faults, private_system, servers, load, capsys), servers)


def test_postgres_stopped_for_half_a_minute_under_load_leaves_no_dead_letter(
    servers: Servers, private_system: System, capsys: pytest.CaptureFixture[str]
) -> None:
    servers.start()
    private_system.start()
    load = under_load(private_system)

    def stop_postgres() -> None:
        servers.postgres.stop("immediate")
        time.sleep(30)
        servers.postgres.start()

    faults = ride_out_each(
        [("PostgreSQL stopped for 30 s", stop_postgres)],
        private_system,
        servers,
        load,
    )

    assert_came_through(outcome(faults, private_system, servers, load, capsys), servers)


def test_broker_killed_seconds_after_start_up(
    servers: Servers, private_system: System, capsys: pytest.CaptureFixture[str]
) -> None:
    servers.start()
    private_system.start()
    load = under_load(private_system, accepted=0)

    def kill_broker() -> None:
        servers.rabbitmq.kill()
        time.sleep(1)
        servers.rabbitmq.start()

    faults = ride_out_each(
        [("RabbitMQ kill -9 seconds after start-up", kill_broker)],
        private_system,
        servers,
        load,
    )

    assert_came_through(outcome(faults, private_system, servers, load, capsys), servers)


def test_the_system_started_while_every_server_is_down_comes_up_when_they_do(
    servers: Servers, private_system: System, capsys: pytest.CaptureFixture[str]
) -> None:
    fault = Fault("every server down for the first 10 s", time.monotonic())
    up_at: list[float] = []

    def start_servers_later() -> None:
        time.sleep(10)
        servers.start()
        up_at.append(time.monotonic())

    later = threading.Thread(target=start_servers_later)
    later.start()
    private_system.start()
    later.join()
    load = under_load(private_system, accepted=0)
    fault.recovery = recovery_since(up_at[0], private_system, load, fault.name)
    time.sleep(2)

    assert_came_through(
        outcome([fault], private_system, servers, load, capsys), servers
    )
