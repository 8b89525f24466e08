"""Leases: which replica of a service does a piece of work that one must do alone.

A lease is a named PostgreSQL session-level advisory lock, held on a
connection of its own (:class:`Leases`, one per worker). It is held for as long
as that session lives, with nothing to renew: a process killed with -9 loses
its leases as soon as the server sees its socket close (at once on one
machine), and a process cut off from the server loses them when the server's
TCP keepalives give up on it (about 5 s: the lease session sets them short).
The holder notices a lost connection when it next checks (:meth:`Leases.held`,
a ``SELECT 1``, bounded by ``tcp_user_timeout``), and another replica, which
retries its claim every second or so, takes over.

A lease keeps a second replica from doing the same work for nothing; it is
not what makes the work correct. While a lease changes hands after a network
cut, the old holder may go on for a few seconds before it notices, so the work
guarded by a lease stays safe to overlap (a relay's consumers deduplicate, a
projection's commit checks its tracking position).

Lease names are keyed to two int4 keys: one for ordersys' leases in the
configured ``ORDERSYS_POSTGRES_SCHEMA`` (so that deployments sharing a
database, each in its own schema, do not share leases), one for the name;
both are CRC-32s, the same in every process. :class:`Holding` is one worker's
hold on one lease, for a loop that must stop working when the lease is lost.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ordersys.errors import InfrastructureUnavailable
from ordersys.outages import server_of
from ordersys.persistence.database import connect
from ordersys.settings import Settings

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger("ordersys.leases")

_SERVER_SIDE = (
    # The server gives up on a silent client after 2 s + 3 x 1 s of unanswered
    # keepalives (or 5 s of unacknowledged data), and ends its session: that
    # frees the leases of a replica cut off by the network, not only of one
    # whose socket closed.
    "-c tcp_keepalives_idle=2 -c tcp_keepalives_interval=1 "
    "-c tcp_keepalives_count=3 -c tcp_user_timeout=5000 "
    # A lease session is idle by design: a server-wide idle timeout must not
    # end it; the lease queries themselves are instant.
    "-c idle_session_timeout=0 -c statement_timeout=5000"
)

_CLIENT_SIDE: dict[str, Any] = {
    "autocommit": True,
    "keepalives": 1,
    "keepalives_idle": 2,
    "keepalives_interval": 1,
    "keepalives_count": 3,
    # A check on a connection the network dropped fails after 5 s instead of
    # the kernel's retransmissions (minutes).
    "tcp_user_timeout": 5000,
    "options": _SERVER_SIDE,
}


def _key(text: str) -> int:
    """A non-negative int4 (pg_locks shows the keys as unsigned oids)."""
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


class Leases:
    """Named leases held by this process as PostgreSQL session-level advisory
    locks, on one dedicated connection (autocommit). A lease is held as long as
    that session lives: a process killed with -9 or cut off from the server
    loses every lease at once (the server ends the session), and another
    process can claim them.

    ``takeovers`` counts the claims won after this object had found the lease
    held by another session: a replica that waited and then took the work
    over (a first claim won at once, or a claim won back after a lost
    connection that no one else took meanwhile, is not a takeover).

    Thread-safe: the workers of a process may share one instance.
    """

    def __init__(self, settings: Settings, worker: str) -> None:
        self.settings = settings
        self.worker = worker
        """Who holds the leases (in logs, metrics and ``pg_stat_activity``)."""
        self.takeovers = 0
        self._class_key = _key(f"ordersys:leases:{settings.postgres_schema}")
        self._conn: psycopg.Connection[Any] | None = None
        self._held: set[str] = set()
        self._contended: set[str] = set()
        """Names found held by another session since this object last held them."""
        self._unreachable = False
        self._lock = threading.RLock()

    def _keys(self, name: str) -> tuple[int, int]:
        return self._class_key, _key(name)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(
                self.settings,
                application_name=f"ordersys leases {self.worker}"[:63],
                **_CLIENT_SIDE,
            )
            if self._unreachable:
                logger.info("%s: PostgreSQL is back for leases", self.worker)
                self._unreachable = False
        return self._conn

    def _lost(self, error: BaseException) -> None:
        """The session is gone, and every lease with it."""
        if self._held:
            logger.warning(
                "%s: leases %s lost: %s", self.worker, sorted(self._held), error
            )
        elif not self._unreachable:
            logger.warning("%s: cannot claim leases: %s", self.worker, error)
        self._unreachable = True
        self._held.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                logger.debug("%s: lease connection not closed", self.worker)

    def claim(self, name: str) -> bool:
        """Take lease ``name`` if no other session holds it (it never waits);
        True if this process holds it now. Claiming a lease held already only
        checks the session is alive. False, too, while PostgreSQL cannot be
        reached (the next claim connects again)."""
        with self._lock:
            try:
                conn = self._connection()
                if name in self._held:
                    conn.execute("SELECT 1")
                    return True
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", self._keys(name)
                ).fetchone()
            except Exception as e:
                if server_of(e) != "PostgreSQL":
                    raise
                self._lost(e)
                return False
            if not (row and row[0]):
                self._contended.add(name)
                return False
            self._held.add(name)
            if name in self._contended:
                self._contended.discard(name)
                self.takeovers += 1
                logger.info("%s: took over lease %s", self.worker, name)
            else:
                logger.info("%s: holds lease %s", self.worker, name)
            return True

    def release(self, name: str) -> None:
        """Give lease ``name`` up (nothing if it is not held)."""
        with self._lock:
            if name not in self._held or self._conn is None:
                return
            self._held.discard(name)
            try:
                self._conn.execute(
                    "SELECT pg_advisory_unlock(%s, %s)", self._keys(name)
                )
            except Exception as e:
                if server_of(e) != "PostgreSQL":
                    raise
                self._lost(e)  # the session, and the lease with it, is gone

    def held(self) -> frozenset[str]:
        """The leases held, once the session is checked to be alive: after a
        lost connection, none (the next :meth:`claim` connects again)."""
        with self._lock:
            if not self._held or self._conn is None:
                return frozenset()
            try:
                self._conn.execute("SELECT 1")
            except Exception as e:
                if server_of(e) != "PostgreSQL":
                    raise
                self._lost(e)
            return frozenset(self._held)

    @property
    def holding(self) -> frozenset[str]:
        """The leases held as last seen, without asking the server (for metrics)."""
        return frozenset(self._held)

    def holders(self, names: Sequence[str]) -> int:
        """How many sessions (processes) hold any of ``names`` now, this one
        included if it does; :class:`InfrastructureUnavailable` if PostgreSQL
        cannot be reached."""
        objids = [_key(name) for name in names]
        with self._lock:
            try:
                row = (
                    self._connection()
                    .execute(
                        "SELECT count(DISTINCT pid) FROM pg_locks "
                        "WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
                        "AND database = (SELECT oid FROM pg_database "
                        "WHERE datname = current_database()) "
                        "AND classid::bigint = %s "
                        "AND objid::bigint = ANY(%s::bigint[])",
                        (self._class_key, objids),
                    )
                    .fetchone()
                )
            except InfrastructureUnavailable as e:
                self._lost(e)
                raise
            except Exception as e:
                if server_of(e) != "PostgreSQL":
                    raise
                self._lost(e)
                raise InfrastructureUnavailable(
                    "PostgreSQL", self.settings.postgres_address, str(e)
                ) from e
        return int(row[0]) if row else 0

    def close(self) -> None:
        """End the session: every lease is released at once."""
        with self._lock:
            self._held.clear()
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()


class Holding:
    """One worker's hold on lease ``name`` of ``leases``, for its loop: claim,
    work while :meth:`still_held`, which asks the server at most every
    ``check_interval`` seconds. With no ``leases`` (no PostgreSQL: a single
    process) the lease is always held."""

    def __init__(
        self, leases: Leases | None, name: str, *, check_interval: float = 1.0
    ) -> None:
        self.leases = leases
        self.name = name
        self.check_interval = check_interval
        self._checked = 0.0

    def claim(self) -> bool:
        if self.leases is None:
            return True
        self._checked = time.monotonic()
        return self.leases.claim(self.name)

    def still_held(self) -> bool:
        if self.leases is None:
            return True
        now = time.monotonic()
        if now - self._checked < self.check_interval:
            return True
        self._checked = now
        return self.name in self.leases.held()

    def release(self) -> None:
        if self.leases is not None:
            self.leases.release(self.name)
