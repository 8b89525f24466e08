"""The bundled shop's settings: the framework's, plus what only the shop uses
(its saga, its simulated payment provider, its notification channels, its
gateway, its crash points), read from ``ORDERSYS_*`` like the framework's."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field, SecretStr

from ordersys.settings import Settings


class ShopSettings(Settings):
    """Everything the bundled system needs: :class:`~ordersys.settings.Settings`
    and the shop's own fields."""

    postgres_notify: bool = Field(
        False,
        description="No worker of the shop subscribes (they poll): a NOTIFY per "
        "append would only cost a transaction.",
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
    crash_at: list[str] = Field(
        default_factory=list,
        description="Crash points where the process kills itself, for recovery tests: "
        '["catalog.reserved"]. See ordersys.shop.faults.',
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


def load_shop_settings(overrides: Mapping[str, object] | None = None) -> ShopSettings:
    """The shop's settings from the environment and ``overrides``; a bad value
    raises :class:`~ordersys.errors.InvalidInput` naming its variable."""
    return ShopSettings.load(overrides)
