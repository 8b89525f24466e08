"""The framework's settings: every address and tunable, read from ``ORDERSYS_*``.

An application of ordersys extends :class:`Settings` with its own fields (the
bundled shop's are in ``ordersys.shop.settings``) and loads them with
:meth:`Settings.load`, which names the variable of a bad value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ordersys.errors import InvalidInput

ENV_PREFIX = "ORDERSYS_"


class Settings(BaseSettings):
    """Everything ordersys needs to know about its surroundings.

    Each field is read from the environment variable ``ORDERSYS_<FIELD>``,
    e.g. ``ORDERSYS_POSTGRES_HOST``; a bad value raises
    :class:`~ordersys.errors.InvalidInput` naming the variable. Load them with
    :meth:`load` (or :func:`load_settings`), which also refuses an override
    that is not a field.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", validate_default=True
    )

    persistence: Literal["postgres", "sqlite", "memory"] = Field(
        "postgres",
        description="Where events live: PostgreSQL, or SQLite/in-memory for "
        "the embedded mode.",
    )
    event_store: Literal["ordersys", "stock"] = Field(
        "ordersys",
        description="PostgreSQL recorder: ordersys' own, or the eventsourcing "
        "library's stock recorder.",
    )
    postgres_host: str = "127.0.0.1"
    postgres_port: int = Field(5432, ge=1, le=65535)
    postgres_user: str = "postgres"
    postgres_password: SecretStr = SecretStr("")
    postgres_dbname: str = Field("ordersys", min_length=1)
    postgres_schema: str = Field(
        "", description="Schema for events; empty means one named after the app."
    )
    postgres_pool_size: int = Field(
        1,
        ge=1,
        description="Connections each application keeps open. A pool opens more "
        "under load (up to the overflow) and closes them after 10 idle minutes: "
        "a low floor keeps a deployment of many replicas inside PostgreSQL's "
        "100 connections.",
    )
    postgres_max_overflow: int = Field(10, ge=0)
    postgres_connect_timeout: int = Field(5, ge=1)
    postgres_notify: bool = Field(
        True,
        description="Appends send a NOTIFY (one transaction each, at most one per "
        "5 ms) that wakes the event store's subscriptions (`recorder.subscribe`); "
        "off where nothing subscribes.",
    )
    sqlite_path: str = Field(
        ":memory:", description="SQLite file for the embedded mode."
    )
    data_dir: str = Field(
        ".ordersys-data",
        description="Directory of the embedded mode's files (SQLite databases).",
    )
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    redis_url: str = "redis://127.0.0.1:6379/0"
    rpc_timeout: float = Field(5.0, gt=0)
    request_concurrency: int = Field(
        8,
        ge=1,
        description="Queries a service answers at once, each on a thread of its "
        "pool; its commands are answered one at a time, in order.",
    )
    snapshot_intervals: dict[str, int] = Field(
        default_factory=dict,
        description='Snapshot every N events, per aggregate class name: {"Order": 50}.',
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "console", "json"] = Field(
        "auto",
        description="Log lines: readable (console), JSON, or auto: readable on a "
        "terminal, JSON otherwise.",
    )
    startup_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds a starting service waits for the servers it needs.",
    )
    projection_batch_size: int = Field(
        500, ge=1, description="Events a projection applies per transaction."
    )
    projection_poll_interval: float = Field(
        0.02, gt=0, description="Seconds a caught-up projection waits between polls."
    )
    saga_partitions: int = Field(
        16, ge=1, description="Partitions a process manager's sagas are shared in."
    )
    cache_prefix: str = Field("ordersys", description="Prefix of read-model keys.")
    messaging_prefix: str = Field(
        "ordersys", description="Prefix of RabbitMQ exchanges and queues."
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of a service's /metrics; 0: none."
    )
    metrics_host: str = Field("127.0.0.1", description="Address /metrics binds.")
    otlp_endpoint: str = Field(
        "",
        description="OTLP/HTTP endpoint traces are sent to (http://jaeger:4318); "
        "empty: no traces.",
    )
    cache_ttl: int = Field(
        3600, ge=1, description="Seconds a cached read-model document lives."
    )

    def __init__(self, **values: Any) -> None:
        # Made directly too, a bad value names its variable, not pydantic's loc.
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise _named_variables(e) from None

    @property
    def postgres_address(self) -> str:
        return f"{self.postgres_host}:{self.postgres_port}"

    @classmethod
    def load(cls, overrides: Mapping[str, object] | None = None) -> Self:
        """Read settings from the environment, naming the variable of a bad value.

        ``overrides`` are field values that win over the environment (for tests
        and for code that composes services). Unrelated ``ORDERSYS_*``
        variables are ignored (another application's settings may be there
        too), but an override that is not a field is refused: code that sets
        it expects it to count.
        """
        values: dict[str, Any] = dict(overrides or {})
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            problems = [
                f"{ENV_PREFIX}{name.upper()}: not a setting" for name in unknown
            ]
            msg = f"invalid settings for {cls.__name__}: " + "; ".join(problems)
            raise InvalidInput(msg, problems=problems)
        return cls(**values)


def _named_variables(error: ValidationError) -> InvalidInput:
    problems = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"])
        variable = ENV_PREFIX + field.split(".")[0].upper()
        problems.append(f"{variable}: {problem['msg']} (got {problem['input']!r})")
    return InvalidInput("invalid settings: " + "; ".join(problems), problems=problems)


def address_of(url: str) -> str:
    """A server URL as errors and logs may show it: without scheme or credentials."""
    return url.split("://", 1)[-1].rsplit("@", 1)[-1]


def load_settings(overrides: Mapping[str, object] | None = None) -> Settings:
    """The framework's settings: :meth:`Settings.load`."""
    return Settings.load(overrides)
