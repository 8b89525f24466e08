"""Middleware for the message buses: logging, timing, and outages as typed errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError

from ordersys.bus import Next
from ordersys.errors import InfrastructureUnavailable, OrdersysError
from ordersys.extras import installed
from ordersys.messages import Message

logger = logging.getLogger("ordersys.bus")

Observer = Callable[[Message, float, str], None]
"""``observer(message, seconds, outcome)``; outcome is ``ok``, the code of the
domain error raised, or ``error`` for anything else."""


def logging_middleware(message: Message, call_next: Next) -> Any:
    """Log each message and its outcome; domain errors at INFO, others with a
    traceback at ERROR (they are bugs or outages)."""
    name = type(message).message_type
    logger.debug("handling %s", name)
    try:
        result = call_next(message)
    except OrdersysError as e:
        logger.info("%s refused: %s (%s)", name, e.message, e.code)
        raise
    except Exception:
        logger.exception("%s failed", name)
        raise
    logger.debug("handled %s", name)
    return result


def timing_middleware(observer: Observer) -> Callable[[Message, Next], Any]:
    """Report each dispatch's duration and outcome to ``observer``."""

    def middleware(message: Message, call_next: Next) -> Any:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return call_next(message)
        except OrdersysError as e:
            outcome = e.code
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            observer(message, time.perf_counter() - started, outcome)

    return middleware


def database_outage_middleware(address: str) -> Callable[[Message, Next], Any]:
    """Turn a lost or refused PostgreSQL connection into
    :class:`InfrastructureUnavailable` (503: try again), not a failure (500).
    The handler's transaction did not commit, so nothing was changed."""
    outages = _outages()

    def middleware(message: Message, call_next: Next) -> Any:
        try:
            return call_next(message)
        except outages as e:
            raise InfrastructureUnavailable("PostgreSQL", address, str(e)) from e

    return middleware


def _outages() -> tuple[type[Exception], ...]:
    """eventsourcing's errors for a lost connection, and psycopg's own if it is
    installed (ordersys' recorders and read models use psycopg directly)."""
    errors: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
    if installed("postgres"):
        import psycopg

        errors += (psycopg.OperationalError, psycopg.InterfaceError)
    return errors
