"""Saga partitions: how the runners of one process manager share its sagas.

A process manager's sagas fall into a fixed number of partitions (the
``saga_partitions`` setting): a saga's partition is a stable hash of its id
(:func:`partition_of`), the same in every process and every release. Each
runner of the manager owns some partitions, and handles only their sagas: it
follows the upstream events that start or change them, sends their commands
and fires their deadlines.

On PostgreSQL, a runner owns a partition while it holds the lease
``saga:<manager>:<p>`` (:class:`LeasedPartitions`: a session advisory lock,
:class:`ordersys.leases.Leases`), and aims at its fair share,
``ceil(partitions / live runners)`` (:func:`fair_share`). A runner also holds
one of the manager's member leases ``saga:<manager>:member:<k>``, so that a
runner that owns no partition yet is counted. Every
:data:`REBALANCE_SECONDS` it claims free partitions up to its share, and
releases what is beyond it when more runners came; a dead runner's leases
end with its database session, and the others claim its partitions.

Embedded (SQLite, in memory) there is one process: its runner owns every
partition (:class:`AllPartitions`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from uuid import UUID, uuid4

if TYPE_CHECKING:
    from ordersys.settings import Settings

REBALANCE_SECONDS = 1.5
"""How often a runner looks at how many runners there are, and at its leases."""


def partition_of(saga_id: UUID, partitions: int) -> int:
    """The partition of the saga ``saga_id``: CRC-32 of its 16 bytes, modulo
    ``partitions`` (stable across processes, unlike :func:`hash`)."""
    return zlib.crc32(saga_id.bytes) % partitions


def fair_share(partitions: int, runners: int) -> int:
    """How many partitions one of ``runners`` live runners aims at owning."""
    return -(-partitions // max(1, runners))


class LeaseHolder(Protocol):
    """What partitions need of :class:`ordersys.leases.Leases`."""

    def claim(self, name: str) -> bool: ...
    def release(self, name: str) -> None: ...
    def held(self) -> frozenset[str]: ...
    def holders(self, names: Sequence[str]) -> int: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Change:
    """What a rebalance changed: partitions claimed, and partitions no longer
    owned (released for other runners, or lost with the lease connection)."""

    gained: frozenset[int] = frozenset()
    lost: frozenset[int] = frozenset()


class Ownership(Protocol):
    """The partitions a runner owns."""

    @property
    def partitions(self) -> int:
        """How many partitions there are in all."""

    @property
    def owned(self) -> frozenset[int]:
        """The partitions owned now (as of the last rebalance or check)."""

    def rebalance(self, before_release: Callable[[int], None]) -> Change:
        """Claim partitions up to the fair share, or release what is beyond
        it (calling ``before_release`` with each first)."""

    def check(self) -> frozenset[int]:
        """The owned partitions whose lease is still held: a lost one is
        owned no more (:meth:`rebalance` reports it as lost)."""

    def close(self) -> None:
        """Release every partition."""


class AllPartitions:
    """Every partition, always: the one runner of an embedded system."""

    def __init__(self, partitions: int) -> None:
        self._all = frozenset(range(partitions))

    @property
    def partitions(self) -> int:
        return len(self._all)

    @property
    def owned(self) -> frozenset[int]:
        return self._all

    def rebalance(self, before_release: Callable[[int], None]) -> Change:  # noqa: ARG002
        return Change()

    def check(self) -> frozenset[int]:
        return self._all

    def close(self) -> None:
        """Nothing is leased."""


class LeasedPartitions:
    """The partitions whose leases this runner holds, on PostgreSQL."""

    def __init__(self, leases: LeaseHolder, manager: str, partitions: int) -> None:
        self.leases = leases
        self.names = [f"saga:{manager}:{p}" for p in range(partitions)]
        self.members = [f"saga:{manager}:member:{k}" for k in range(partitions)]
        self._everyone = self.names + self.members
        self._owned: frozenset[int] = frozenset()
        self._member: str | None = None
        self._lost: frozenset[int] = frozenset()

    @property
    def partitions(self) -> int:
        return len(self.names)

    @property
    def owned(self) -> frozenset[int]:
        return self._owned

    def check(self) -> frozenset[int]:
        held = self.leases.held()
        still = frozenset(p for p in self._owned if self.names[p] in held)
        if still != self._owned:
            self._lost |= self._owned - still
            self._owned = still
        return still

    def rebalance(self, before_release: Callable[[int], None]) -> Change:
        self.check()
        lost, self._lost = self._lost, frozenset()
        if self._member is None or self._member not in self.leases.held():
            self._member = self._claim_member()
        runners = self.leases.holders(self._everyone) + (self._member is None)
        share = fair_share(self.partitions, runners)
        owned = set(self._owned)
        gained: set[int] = set()
        for p in self._claim_order():
            if len(owned) >= share:
                break
            if p not in owned and self.leases.claim(self.names[p]):
                owned.add(p)
                gained.add(p)
        released: set[int] = set()
        for p in sorted(owned, reverse=True)[: max(0, len(owned) - share)]:
            before_release(p)
            self.leases.release(self.names[p])
            owned.discard(p)
            released.add(p)
        self._owned = frozenset(owned)
        return Change(frozenset(gained), lost | frozenset(released))

    def _claim_member(self) -> str | None:
        for name in self.members:
            if self.leases.claim(name):
                return name
        return None

    def _claim_order(self) -> list[int]:
        """Partitions from one that depends on the member lease: runners
        starting together do not all try the same ones first."""
        start = self.members.index(self._member) if self._member else 0
        offset = start * fair_share(self.partitions, start + 1) % self.partitions
        return [(offset + k) % self.partitions for k in range(self.partitions)]

    def close(self) -> None:
        self._owned = frozenset()
        self._member = None
        self.leases.close()


def ownership_for(settings: Settings, manager: str) -> Ownership:
    """Leased partitions on PostgreSQL, every partition otherwise."""
    partitions = settings.saga_partitions
    if settings.persistence != "postgres":
        return AllPartitions(partitions)
    from ordersys.leases import Leases

    worker = f"{manager}:{uuid4().hex[:8]}"
    return LeasedPartitions(Leases(settings, worker), manager, partitions)
