"""Replicas: several processes of one service on one machine.

``ordersys up --replicas orders=2,catalog=2`` runs two processes of orders and
two of catalog, one of every other service. Each process is a *replica*, with
a name of its own (``orders#1``, ``orders#2``; a service that runs once keeps
its plain name) that it says in its ready line and its log lines, and a
metrics port of its own:

- the first replica of each service keeps the port it has without replicas:
  the first port plus the service's place in the start order (9101, 9102, ...);
- replica *n* of a service is ``stride * (n - 1)`` ports above its first, the
  stride being 10 (100 from ten services on), so that the ports of two
  services never meet: orders on 9106, ``orders#2`` on 9116, ``orders#3`` on
  9126.

A process learns which replica it is from ``ORDERSYS_REPLICA`` (1, 2, ...),
set only for a service that runs more than once: a process without it is the
only one of its service on this machine, as with ``ordersys run``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ordersys.errors import InvalidInput

REPLICA_VARIABLE = "ORDERSYS_REPLICA"
MAX_REPLICAS = 32
"""Replicas of one service on one machine: each is a whole Python process, and
more than a machine's cores gain nothing; past this a typo is likelier."""
OPTION = "--replicas"
LAST_PORT = 65535


@dataclass(frozen=True)
class Replica:
    """One process of a service: the ``number``-th of ``of``."""

    service: str
    number: int = 1
    of: int = 1
    metrics_port: int = 0

    @property
    def name(self) -> str:
        return self.service if self.of == 1 else f"{self.service}#{self.number}"

    def environment(self) -> dict[str, str]:
        """What its process is told on top of the launcher's environment."""
        env = {}
        if self.metrics_port:
            env["ORDERSYS_METRICS_PORT"] = str(self.metrics_port)
        if self.of > 1:
            env[REPLICA_VARIABLE] = str(self.number)
        return env


def parse_replicas(text: str, names: Sequence[str]) -> dict[str, int]:
    """``"orders=2,catalog=2"`` as ``{"orders": 2, "catalog": 2}``; raises
    :class:`InvalidInput` (one line, naming the option) for anything else."""
    counts: dict[str, int] = {}
    for entry in text.split(","):
        name, count = _entry(entry.strip(), names)
        if name in counts:
            raise InvalidInput(f"{OPTION}: {name} is given twice", field="replicas")
        counts[name] = count
    return counts


def _entry(entry: str, names: Sequence[str]) -> tuple[str, int]:
    name, equals, count = entry.partition("=")
    name, count = name.strip(), count.strip()
    if not equals or not name:
        msg = f"{OPTION}: {entry!r} is not SERVICE=COUNT (e.g. orders=2,catalog=2)"
        raise InvalidInput(msg, field="replicas")
    if name not in names:
        msg = f"{OPTION}: no service {name!r}; one of: {', '.join(names)}"
        raise InvalidInput(msg, field="replicas")
    if (
        not count.isascii()
        or not count.isdigit()
        or not 1 <= int(count) <= MAX_REPLICAS
    ):
        msg = (
            f"{OPTION}: {entry}: the count must be a whole number "
            f"from 1 to {MAX_REPLICAS}"
        )
        raise InvalidInput(msg, field="replicas")
    return name, int(count)


def port_stride(services: int) -> int:
    """How far apart two replicas of a service are in metrics ports: a power
    of ten above the services' places (0 to ``services - 1``)."""
    return int(10 ** len(str(max(services - 1, 0))))


def plan(
    names: Sequence[str], counts: Mapping[str, int], metrics_port: int = 0
) -> list[Replica]:
    """Every replica to run, service by service in the order of ``names``,
    with its metrics port (none when ``metrics_port`` is 0); raises
    :class:`InvalidInput` when the ports would run past 65535."""
    unknown = sorted(set(counts) - set(names))
    if unknown:
        msg = f"{OPTION}: no service {unknown[0]!r}; one of: {', '.join(names)}"
        raise InvalidInput(msg, field="replicas")
    stride = port_stride(len(names))
    replicas = []
    for place, service in enumerate(names):
        of = counts.get(service, 1)
        for number in range(1, of + 1):
            port = metrics_port + place + stride * (number - 1) if metrics_port else 0
            if port > LAST_PORT:
                msg = (
                    f"{service}#{number} would serve its metrics on port {port}, "
                    f"past {LAST_PORT}: choose a lower --metrics-port"
                )
                raise InvalidInput(msg, field="metrics_port")
            replicas.append(Replica(service, number, of, port))
    return replicas


def replica_name(service: str, environ: Mapping[str, str]) -> str:
    """What the process of ``service`` calls itself: ``service#n`` when
    ``ORDERSYS_REPLICA`` says it is replica *n*, the plain name otherwise."""
    number = environ.get(REPLICA_VARIABLE, "").strip()
    if not number:
        return service
    if not number.isascii() or not number.isdigit() or int(number) < 1:
        msg = (
            f"{REPLICA_VARIABLE} must be the replica's number (1, 2, ...), "
            f"not {number!r}"
        )
        raise InvalidInput(msg, field="replica")
    return f"{service}#{int(number)}"
