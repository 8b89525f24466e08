"""The faults the reliability suite injects, each as the operator would see it."""

from __future__ import annotations

import subprocess
import time

import redis

from ordersys.persistence.database import connect
from ordersys.settings import Settings


def rabbitmq(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True)


def close_all_rabbitmq_connections() -> None:
    rabbitmq("close_all_connections", "reliability suite")


def restart_rabbitmq_app() -> None:
    """``rabbitmqctl stop_app``, a pause, ``start_app``: the broker is away."""
    rabbitmq("stop_app")
    time.sleep(2)
    rabbitmq("start_app")
    rabbitmq("await_startup")


def terminate_postgres_backends(settings: Settings) -> int:
    """``pg_terminate_backend`` for every other connection to the database."""
    with connect(settings, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def flush_redis(settings: Settings) -> None:
    redis.Redis.from_url(settings.redis_url).flushdb()
