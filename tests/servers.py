"""Private server instances for tests that stop, kill or freeze a server.

Each runs on ports of its own with its data in a directory of its own under
/tmp, started and killed by the test that needs it, so that the machine's own
PostgreSQL, RabbitMQ and Redis are never touched. Every class has the same
shape: ``start()``, a way to take the server away (``kill()``, and for
PostgreSQL ``stop()``), ``close()`` to remove it for good, and ``settings``
(the ``Settings`` fields that point ordersys at it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

_PG_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
# Imported by the benchmark too, which needs no PostgreSQL binaries of its own.
PG_BIN = Path(_PG_BINS[-1]) if _PG_BINS else Path("/usr/lib/postgresql/bin")
# Not /usr/sbin's wrapper: it runs the node as the rabbitmq user.
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_ports(count: int) -> int:
    """A first port from which ``count`` ports are free (for now), all below
    the kernel's ephemeral range: there, any process's outgoing connection may
    take one of them before the server meant for it binds it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = list(range(10_000, low - count, count))
    random.shuffle(candidates)
    for first in candidates:
        try:
            for port in range(first, first + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    msg = f"no {count} free ports in a row below {low}"
    raise RuntimeError(msg)


def wait_for_port(port: int, within: float, what: str) -> None:
    """Return once something accepts connections on ``port``."""
    deadline = time.monotonic() + within
    while True:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            msg = f"{what} did not listen on port {port} within {within}s"
            raise RuntimeError(msg)
        time.sleep(0.1)


def _scratch(prefix: str, owner: str | None = None) -> Path:
    """A directory in /tmp (pytest's are private to root, which a server's
    own user may not enter), owned by ``owner`` if given."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if owner is not None:
        shutil.chown(path, owner)
    return path


def _kill_group(process: subprocess.Popen[Any] | None) -> None:
    if process is not None and process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class PrivatePostgres:
    """A PostgreSQL cluster made with ``initdb`` (trust authentication), run by
    the ``postgres`` user when the tests run as root, as initdb requires."""

    def __init__(self) -> None:
        self.port = free_port()
        owner = "postgres" if os.geteuid() == 0 else None
        self._as = ["runuser", "-u", owner, "--"] if owner else []
        self.dir = _scratch("ordersys-pg-", owner)
        self.data = self.dir / "data"
        self._run(
            PG_BIN / "initdb",
            "-D",
            self.data,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )

    @property
    def settings(self) -> dict[str, Any]:
        return {"postgres_host": "127.0.0.1", "postgres_port": self.port}

    def _run(self, *args: object) -> None:
        subprocess.run(
            [*self._as, *map(str, args)], check=True, capture_output=True, cwd="/"
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        self._run(
            PG_BIN / "pg_ctl", "-D", self.data, "-o", options, "-l",
            self.dir / "log", "-w", "start",
        )  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        """``pg_ctl stop -m immediate``: every backend dies at once, as in a crash."""
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRabbitMQ:
    """A RabbitMQ node with its own node name, ports, data and log directories,
    and no plugins (so no management port to clash with the machine's node).
    ``kill()`` is kill -9; ``start()`` again finds its durable queues."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = _scratch("ordersys-rabbitmq-")
        self.node = f"ordersys-{self.port}@localhost"
        (self.dir / "enabled_plugins").write_text("")
        (self.dir / "rabbitmq-env.conf").write_text("")
        # The machine's rabbitmq.conf names port 5672: this node has its own.
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
        )
        self.env = {
            **os.environ,
            "HOME": str(self.dir),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def settings(self) -> dict[str, Any]:
        return {"rabbitmq_url": self.url}

    def start(self, wait: bool = True) -> None:
        log = (self.dir / "server.log").open("ab")
        self.process = subprocess.Popen(
            [RABBITMQ_SERVER],
            env=self.env,
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_until_up()

    def wait_until_up(self, within: float = 60.0) -> None:
        wait_for_port(self.port, within, f"RabbitMQ {self.node}")

    def kill(self) -> None:
        """kill -9 of the node (and the script that started it)."""
        _kill_group(self.process)
        self.process = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """A Redis on a port of its own, keeping nothing on disk: after
    ``kill()`` and ``start()`` it is empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def settings(self) -> dict[str, Any]:
        return {"redis_url": self.url}

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, 10, "Redis")

    def kill(self) -> None:
        _kill_group(self.process)
        self.process = None

    def close(self) -> None:
        self.kill()
