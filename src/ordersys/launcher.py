"""``ordersys up``: every service in a process of its own, supervised.

Each child is ``python -m <module> run <service>``, one per replica
(:mod:`ordersys.replicas`: ``orders#1`` and ``orders#2`` with two of orders).
Its standard output is echoed with its name (``[orders] orders ready, ...``,
``[orders#2] orders#2 ready, ...``), except the lines every child prints alike
while the servers are missing ("waiting for RabbitMQ at ..."), which are said
once. A child that dies is restarted with backoff, up to a limit, each replica
on its own count; one that gives up with an error line (``ordersys: error:
...``) stops everything, and that line is said once. Stopping signals every
child at once and kills what is still alive at the deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO

from ordersys.errors import OrdersysError
from ordersys.replicas import Replica, plan

STOP_SECONDS = 3.0
"""How long children get to stop before they are killed: within the 5 s in
which Ctrl-C must stop a system, with room for a busy machine."""
RESTARTS = 3
"""How many times a child that dies is restarted within RESTART_WINDOW seconds."""
RESTART_WINDOW = 60.0
WAITING = "waiting for "
ERROR = "ordersys: error: "

ReplicaEnvironment = Callable[[Replica], Mapping[str, str]]
"""What a replica's process is told besides the launcher's environment."""

_output = threading.Lock()
_said_once: set[str] = set()


def say(line: str, stream: IO[str] | None = None) -> None:
    """Print one whole line: the children's echoed output and the launcher's own
    lines come from several threads and must not interleave within a line."""
    stream = stream or sys.stdout
    with _output:
        stream.write(line + "\n")
        stream.flush()


def say_once(line: str) -> None:
    """Print ``line`` unless it was said already (by any child)."""
    with _output:
        if line in _said_once:
            return
        _said_once.add(line)
    say(line)


class LaunchFailed(OrdersysError):
    """A child gave up, or kept dying: the system was stopped."""

    code = "launch_failed"


def child_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The children's environment: their logs pass through the launcher, so
    they are told what the launcher's own terminal (or file) wants."""
    env = dict(base)
    terminal = sys.stderr.isatty()
    env.setdefault("ORDERSYS_LOG_FORMAT", "console" if terminal else "json")
    if terminal and not env.get("NO_COLOR"):
        env.setdefault("FORCE_COLOR", "1")
    return env


@dataclass
class Child:
    """One service process (a replica), restarted in place when it dies."""

    name: str
    command: list[str]
    env: dict[str, str]
    replica: Replica | None = None
    process: subprocess.Popen[str] | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    ready_line: str = ""
    error: str = ""
    deaths: list[float] = field(default_factory=list)
    restart_at: float = 0.0
    _readers: list[threading.Thread] = field(default_factory=list)

    def spawn(self) -> None:
        self.ready.clear()
        self.error = ""
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        self._readers = [
            threading.Thread(target=self._echo, args=(self.process,), daemon=True),
            threading.Thread(target=self._errors, args=(self.process,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _echo(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip()
            if line.startswith(WAITING):
                say_once(line)
                continue
            say(f"[{self.name}] {line}")
            if line.startswith(f"{self.name} ready"):
                self.ready_line = line
                self.ready.set()

    def _errors(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if line.startswith(ERROR):
                self.error = line[len(ERROR) :].rstrip()
            else:
                say(line.rstrip(), sys.stderr)

    def exited(self) -> int | None:
        """Its exit status once it has exited (and its output is read)."""
        assert self.process is not None
        status = self.process.poll()
        if status is not None:
            for reader in self._readers:
                reader.join(1.0)
        return status

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def service(self) -> str:
        return self.replica.service if self.replica else self.name


class Children:
    """The children of one ``ordersys up``."""

    def __init__(self, children: list[Child]) -> None:
        self.children = children

    def ready_line(self, name: str) -> str:
        return next(c.ready_line for c in self.children if c.name == name)

    def ready_lines(self, service: str) -> list[str]:
        """The ready line of each replica of ``service``, in order."""
        return [c.ready_line for c in self.children if c.service == service]

    @property
    def replicas(self) -> list[Replica]:
        return [c.replica for c in self.children if c.replica is not None]

    def supervise(self, now: float) -> None:
        """Restart a child that died (with backoff); raise :class:`LaunchFailed`
        for one that gave up, or died more than RESTARTS times in a window."""
        for child in self.children:
            if child.restart_at:
                if now >= child.restart_at:
                    child.restart_at = 0.0
                    child.spawn()
                continue
            status = child.exited()
            if status is None:
                continue
            if child.error:
                raise LaunchFailed(child.error, service=child.name)
            if status == 0:
                msg = f"{child.name} stopped on its own; stopped the others"
                raise LaunchFailed(msg, service=child.name)
            child.deaths = [t for t in child.deaths if now - t < RESTART_WINDOW]
            child.deaths.append(now)
            if len(child.deaths) > RESTARTS:
                msg = (
                    f"{child.name} died {len(child.deaths)} times within "
                    f"{RESTART_WINDOW:g} s (last exit status {status}); "
                    "stopped everything"
                )
                raise LaunchFailed(msg, service=child.name)
            delay = 2.0 ** (len(child.deaths) - 1)
            say(f"{child.name} exited (status {status}); restarting in {delay:g} s")
            child.restart_at = now + delay

    def stop(self) -> None:
        """SIGTERM every child at once; kill those still alive at the deadline."""
        for child in self.children:
            child.restart_at = 0.0
            if child.alive():
                assert child.process is not None
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()


def start(
    names: Iterable[str],
    metrics_port: int = 0,
    *,
    replicas: Mapping[str, int] | None = None,
    environment: ReplicaEnvironment | None = None,
    stopping: threading.Event | None = None,
    ready_timeout: float = 120.0,
    module: str = "ordersys.shop.cli",
) -> Children:
    """Start ``python -m module run <service>`` for each replica of each service
    (``replicas`` says how many, one by default) and wait until each is ready,
    restarting one that dies; raises :class:`LaunchFailed` (having stopped them
    all) when one gives up or is not ready in time. With ``metrics_port``, the
    replicas serve /metrics on it and the ports after (:func:`~ordersys.replicas.plan`).
    ``environment`` adds to a replica's environment (its own HTTP port, say)."""
    stopping = stopping or threading.Event()
    children = []
    for replica in plan(list(names), replicas or {}, metrics_port):
        env = child_environment(os.environ)
        env.update(replica.environment())
        if environment is not None:
            env.update(environment(replica))
        command = [sys.executable, "-m", module, "run", replica.service]
        children.append(Child(replica.name, command, env, replica))
    started = Children(children)
    for child in children:
        child.spawn()
    deadline = time.monotonic() + ready_timeout
    try:
        while not all(c.ready.is_set() for c in children):
            if stopping.wait(0.1):
                break
            now = time.monotonic()
            started.supervise(now)
            if now > deadline:
                late = ", ".join(c.name for c in children if not c.ready.is_set())
                msg = f"not ready within {ready_timeout:g} s: {late}"
                raise LaunchFailed(msg)
    except BaseException:
        started.stop()
        raise
    return started


def watch(children: Children, stopping: threading.Event) -> None:
    """Supervise ``children`` until ``stopping`` is set; raises
    :class:`LaunchFailed` when one cannot be kept running."""
    while not stopping.wait(0.2):
        children.supervise(time.monotonic())


def stop(children: Children) -> None:
    children.stop()
