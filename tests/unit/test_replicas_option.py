"""``ordersys up --replicas orders=2,catalog=2``: how many processes of each
service, their names and metrics ports, and a clear one-line error (exit
status 2) for a bad option; the launcher runs and restarts each replica on
its own."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ordersys import launcher
from ordersys.errors import InvalidInput
from ordersys.replicas import (
    MAX_REPLICAS,
    REPLICA_VARIABLE,
    Replica,
    parse_replicas,
    plan,
    port_stride,
    replica_name,
)
from ordersys.shop.cli import main
from ordersys.shop.system import SHOP

ROOT = Path(__file__).resolve().parents[2]
NAMES = SHOP.names


def test_the_option_names_how_many_of_each_service() -> None:
    assert parse_replicas("orders=2,catalog=3", NAMES) == {"orders": 2, "catalog": 3}
    assert parse_replicas(" orders = 2 , gateway=1 ", NAMES) == {
        "orders": 2,
        "gateway": 1,
    }


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("orders=x", "--replicas: orders=x: the count must be a whole number"),
        ("orders=0", "--replicas: orders=0: the count must be a whole number"),
        ("orders=-1", "--replicas: orders=-1: the count must be a whole number"),
        ("orders=2.5", "--replicas: orders=2.5: the count must be a whole number"),
        (f"orders={MAX_REPLICAS + 1}", f"from 1 to {MAX_REPLICAS}"),
        ("shipping=2", "--replicas: no service 'shipping'; one of: notifications,"),
        ("orders", "--replicas: 'orders' is not SERVICE=COUNT"),
        ("=2", "--replicas: '=2' is not SERVICE=COUNT"),
        ("orders=2,", "--replicas: '' is not SERVICE=COUNT"),
        ("orders=2,orders=3", "--replicas: orders is given twice"),
    ],
)
def test_a_bad_option_is_refused_in_one_line(option: str, says: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_replicas(option, NAMES)
    assert says in refused.value.message
    assert "\n" not in refused.value.message


@pytest.mark.parametrize(
    "args",
    [
        ["--replicas", "orders=x"],
        ["--replicas", "shipping=2"],
        ["--replicas", "orders=0"],
        ["--replicas", "orders=2", "--embedded"],
        ["--replicas", "orders=30", "--metrics-port", "65300"],
    ],
    ids=" ".join,
)
def test_the_command_line_exits_2_with_one_line_and_no_traceback(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a bad option, when `ordersys up` is asked to start
    status = main(["up", "--metrics-port", "0", *args])
    # then it says why in one line, starts nothing, and exits 2
    said = capsys.readouterr()
    assert status == 2
    assert said.err.startswith("ordersys: error: ")
    assert said.err.count("\n") == 1
    assert said.out == ""


def test_first_replicas_keep_the_ports_of_a_system_without_replicas() -> None:
    without = plan(NAMES, {}, 9101)
    assert [(r.name, r.metrics_port) for r in without] == [
        (name, 9101 + n) for n, name in enumerate(NAMES)
    ]


def test_replica_n_is_ten_ports_above_replica_n_minus_one() -> None:
    replicas = plan(NAMES, {"catalog": 2, "orders": 3}, 9101)
    ports = {r.name: r.metrics_port for r in replicas}
    assert ports["catalog#1"] == 9104
    assert ports["catalog#2"] == 9114
    assert [ports[f"orders#{n}"] for n in (1, 2, 3)] == [9106, 9116, 9126]
    assert ports["payments"] == 9105
    # every port its own
    assert len(set(ports.values())) == len(replicas)
    # in the order the services start, a service's replicas together
    assert [r.name for r in replicas][3:5] == ["catalog#1", "catalog#2"]


def test_the_stride_leaves_room_for_every_service() -> None:
    assert port_stride(7) == 10
    assert port_stride(10) == 10
    assert port_stride(11) == 100
    names = [f"s{n}" for n in range(12)]
    ports = [r.metrics_port for r in plan(names, dict.fromkeys(names, 3), 20000)]
    assert len(set(ports)) == len(ports)


def test_without_metrics_ports_no_replica_gets_one() -> None:
    replicas = plan(NAMES, {"orders": 2}, 0)
    assert {r.metrics_port for r in replicas} == {0}
    assert "ORDERSYS_METRICS_PORT" not in replicas[-2].environment()


def test_a_replica_is_told_its_number_and_port_a_single_process_neither() -> None:
    assert Replica("orders", 2, 2, 9116).environment() == {
        "ORDERSYS_METRICS_PORT": "9116",
        REPLICA_VARIABLE: "2",
    }
    assert Replica("payments", 1, 1, 9105).environment() == {
        "ORDERSYS_METRICS_PORT": "9105"
    }


def test_a_process_calls_itself_by_its_replica() -> None:
    assert replica_name("orders", {}) == "orders"
    assert replica_name("orders", {REPLICA_VARIABLE: "2"}) == "orders#2"
    for bad in ("0", "x", "-1"):
        with pytest.raises(InvalidInput, match=REPLICA_VARIABLE):
            replica_name("orders", {REPLICA_VARIABLE: bad})


def test_ports_past_65535_are_refused() -> None:
    with pytest.raises(InvalidInput, match="orders#2 would serve its metrics on port"):
        plan(NAMES, {"orders": 2}, 65530)


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> Iterator[launcher.Children]:
    """Two replicas of ``a`` and one of ``b``, stand-ins that start at once."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    started = launcher.start(
        ["a", "b"],
        metrics_port=30100,
        replicas={"a": 2},
        environment=lambda r: {"TOLD": r.name},
        module="tests.unit.replica_child",
        ready_timeout=60,
    )
    yield started
    started.stop()


def test_the_launcher_runs_each_replica_as_a_process_of_its_own(
    children: launcher.Children,
) -> None:
    lines = {c.name: c.ready_line for c in children.children}
    assert set(lines) == {"a#1", "a#2", "b"}
    assert lines["a#1"].startswith("a#1 ready, metrics on 30100, ")
    assert lines["a#2"].startswith("a#2 ready, metrics on 30110, ")
    assert lines["b"].startswith("b ready, metrics on 30101, ")
    pids = {c.process.pid for c in children.children if c.process}
    assert len(pids) == 3
    assert children.ready_lines("a") == [lines["a#1"], lines["a#2"]]
    assert [c.env["TOLD"] for c in children.children] == ["a#1", "a#2", "b"]


def test_a_replica_that_dies_is_restarted_on_its_own(
    children: launcher.Children,
) -> None:
    first, second, other = children.children
    assert second.process is not None
    before = {c.name: c.process.pid for c in children.children if c.process}
    # Given a#2 killed
    os.kill(second.process.pid, signal.SIGKILL)
    second.process.wait()
    # when the launcher supervises until it is back (or gives up looking)
    deadline = time.monotonic() + 30
    while not (second.ready.is_set() and second.alive()):
        if time.monotonic() > deadline:
            break
        children.supervise(time.monotonic())
        time.sleep(0.05)
    # then a#2 runs again, as a new process, and the others were left alone
    assert second.process.pid != before["a#2"]
    assert second.ready_line.startswith("a#2 ready, metrics on 30110, ")
    assert len(second.deaths) == 1
    assert second.alive()
    assert {c.name: c.process.pid for c in (first, other) if c.process} == {
        "a#1": before["a#1"],
        "b": before["b"],
    }
    assert (first.deaths, other.deaths) == ([], [])
