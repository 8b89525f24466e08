"""``ordersys up``: every service of the bundled system in a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

READY_TIMEOUT = 60.0

_output = threading.Lock()


def say(line: str) -> None:
    """Print one whole line: the children's echoed output and the launcher's own
    lines come from several threads and must not interleave within a line."""
    with _output:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


@dataclass
class Child:
    name: str
    process: subprocess.Popen[str]


def start(names: Iterable[str], metrics_port: int = 0) -> list[Child]:
    """Start ``ordersys run <name>`` for each service and wait until each is ready;
    stops them all and raises ``RuntimeError`` naming the one that is not.
    With ``metrics_port``, the services serve /metrics on it and the ports after."""
    children = []
    for number, name in enumerate(names):
        env = dict(os.environ)
        if metrics_port:
            env["ORDERSYS_METRICS_PORT"] = str(metrics_port + number)
        process = subprocess.Popen(
            [sys.executable, "-m", "ordersys.shop.cli", "run", name],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        children.append(Child(name, process))
    for child in children:
        if not _ready(child):
            stop(children)
            msg = f"{child.name} did not start (exit code {child.process.poll()})"
            raise RuntimeError(msg)
    return children


def _ready(child: Child) -> bool:
    assert child.process.stdout is not None
    found = threading.Event()

    def read() -> None:
        assert child.process.stdout is not None
        for line in child.process.stdout:
            say(f"[{child.name}] {line.rstrip()}")
            if " ready" in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT
    while not found.wait(0.1):
        if child.process.poll() is not None or time.monotonic() > deadline:
            return False
    return True


def stop(children: list[Child]) -> None:
    """SIGTERM every child, then wait for each (killing one that hangs)."""
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def watch(children: list[Child], stopping: threading.Event) -> str | None:
    """Block until ``stopping`` is set or a child exits; the name of a child that
    exited on its own, if one did."""
    while not stopping.wait(0.5):
        for child in children:
            if child.process.poll() is not None:
                return child.name
    return None
