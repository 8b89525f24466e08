"""One settings model for every address and tunable, read from ``ORDERSYS_*``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ordersys.errors import InvalidInput

ENV_PREFIX = "ORDERSYS_"


class Settings(BaseSettings):
    """Everything ordersys needs to know about its surroundings.

    Each field is read from the environment variable ``ORDERSYS_<FIELD>``,
    e.g. ``ORDERSYS_POSTGRES_HOST``. Use :func:`load_settings` to get errors
    that name the variable.
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
    postgres_pool_size: int = Field(5, ge=1)
    postgres_max_overflow: int = Field(10, ge=0)
    postgres_connect_timeout: int = Field(5, ge=1)
    sqlite_path: str = Field(
        ":memory:", description="SQLite file for the embedded mode."
    )
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    redis_url: str = "redis://127.0.0.1:6379/0"
    rpc_timeout: float = Field(5.0, gt=0)
    snapshot_intervals: dict[str, int] = Field(
        default_factory=dict,
        description='Snapshot every N events, per aggregate class name: {"Order": 50}.',
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    projection_batch_size: int = Field(
        500, ge=1, description="Events a projection applies per transaction."
    )
    projection_poll_interval: float = Field(
        0.02, gt=0, description="Seconds a caught-up projection waits between polls."
    )
    cache_prefix: str = Field("ordersys", description="Prefix of read-model keys.")
    messaging_prefix: str = Field(
        "ordersys", description="Prefix of RabbitMQ exchanges and queues."
    )
    saga_step_timeout: float = Field(
        30.0, gt=0, description="Seconds the order saga waits for each step's reply."
    )
    payment_decline_rate: float = Field(
        0.0, ge=0, le=1, description="Share of charges the simulated provider declines."
    )
    payment_latency: float = Field(
        0.0,
        ge=0,
        description="Seconds the simulated payment provider takes per charge.",
    )
    notify_webhook_url: str = Field(
        "", description="Notifications are also POSTed (JSON) to this URL."
    )
    smtp_host: str = Field(
        "", description="Notifications are also mailed through this SMTP server."
    )
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_sender: str = "orders@ordersys.local"
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of a service's /metrics; 0: none."
    )
    metrics_host: str = Field("127.0.0.1", description="Address /metrics binds.")
    otlp_endpoint: str = Field(
        "",
        description="OTLP/HTTP endpoint traces are sent to (http://jaeger:4318); "
        "empty: no traces.",
    )
    crash_at: list[str] = Field(
        default_factory=list,
        description="Crash points where the process kills itself, for recovery tests: "
        '["catalog.reserved"]. See ordersys.shop.faults.',
    )
    cache_ttl: int = Field(
        3600, ge=1, description="Seconds a cached read-model document lives."
    )
    gateway_host: str = Field("127.0.0.1", description="Address the gateway binds.")
    gateway_port: int = Field(8000, ge=0, le=65535)
    jwt_secret: SecretStr = Field(
        SecretStr(""),
        description="HS256 key of the gateway's tokens (32+ characters); empty "
        "means a random one per gateway process.",
    )
    jwt_access_seconds: int = Field(300, ge=1, description="Access token lifetime.")
    jwt_refresh_seconds: int = Field(
        604800, ge=1, description="Refresh token lifetime."
    )
    rate_limit_per_minute: int = Field(
        600, ge=1, description="Requests per client and minute at the gateway."
    )
    max_body_bytes: int = Field(
        65536, ge=1, description="Largest request body the gateway accepts."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed by CORS, JSON: ["https://shop.example"].',
    )

    @property
    def postgres_address(self) -> str:
        return f"{self.postgres_host}:{self.postgres_port}"


def address_of(url: str) -> str:
    """A server URL as errors and logs may show it: without scheme or credentials."""
    return url.split("://", 1)[-1].rsplit("@", 1)[-1]


def load_settings(overrides: Mapping[str, object] | None = None) -> Settings:
    """Read settings from the environment, naming the variable of a bad value.

    ``overrides`` are field values that win over the environment (for tests
    and for code that composes services).
    """
    try:
        return Settings(**dict(overrides or {}))  # type: ignore[arg-type]
    except ValidationError as e:
        problems = []
        for error in e.errors():
            field = ".".join(str(part) for part in error["loc"])
            variable = ENV_PREFIX + field.split(".")[0].upper()
            problems.append(f"{variable}: {error['msg']} (got {error['input']!r})")
        raise InvalidInput(
            "invalid settings: " + "; ".join(problems), problems=problems
        ) from None
