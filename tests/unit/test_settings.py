"""Settings come from ORDERSYS_* variables; a bad value names its variable."""

from __future__ import annotations

import pytest

from ordersys import InvalidInput, Settings, load_settings
from ordersys.shop.cli import main
from ordersys.shop.settings import ShopSettings, load_shop_settings


def test_defaults_point_at_the_local_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()

    assert settings.postgres_address == "127.0.0.1:5432"
    assert settings.rabbitmq_url.endswith("@127.0.0.1:5672//")
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


def test_a_variable_overrides_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSYS_POSTGRES_PORT", "6543")

    assert load_settings().postgres_port == 6543


def test_an_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSYS_POSTGRES_PORT", "five")

    with pytest.raises(InvalidInput, match=r"ORDERSYS_POSTGRES_PORT.*'five'"):
        load_settings()


def test_an_unknown_choice_names_the_variable_and_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERSYS_PERSISTENCE", "mongo")

    with pytest.raises(InvalidInput, match=r"ORDERSYS_PERSISTENCE.*'postgres'"):
        load_settings()


def test_the_framework_knows_nothing_of_the_shops_settings() -> None:
    shop_only = set(ShopSettings.model_fields) - set(Settings.model_fields)

    assert {"saga_step_timeout", "jwt_secret", "crash_at"} <= shop_only
    assert not any(
        name.startswith(("gateway_", "smtp_")) for name in Settings.model_fields
    )


def test_the_shops_settings_are_the_framework_settings_and_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERSYS_POSTGRES_PORT", "6543")
    monkeypatch.setenv("ORDERSYS_SAGA_STEP_TIMEOUT", "3")

    settings = load_shop_settings({"gateway_port": 0})

    assert (settings.postgres_port, settings.saga_step_timeout) == (6543, 3.0)
    assert settings.gateway_port == 0


def test_a_bad_shop_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSYS_PAYMENT_DECLINE_RATE", "2")

    with pytest.raises(InvalidInput, match=r"ORDERSYS_PAYMENT_DECLINE_RATE.*'2'"):
        load_shop_settings()


def test_a_shop_variable_is_ignored_by_the_framework(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERSYS_JWT_SECRET", "short")

    assert not hasattr(load_settings(), "jwt_secret")


def test_settings_made_directly_name_the_variable_of_a_bad_value() -> None:
    with pytest.raises(InvalidInput, match=r"ORDERSYS_SMTP_PORT.*0"):
        ShopSettings(smtp_port=0)


def test_an_override_that_is_no_setting_of_the_model_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"ORDERSYS_JWT_SECRET: not a setting"):
        load_settings({"jwt_secret": "s" * 32})


def test_the_cli_reports_a_bad_setting_in_one_line_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORDERSYS_REDIS_URL", "")
    monkeypatch.setenv("ORDERSYS_RPC_TIMEOUT", "-1")

    assert main(["doctor"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("ordersys: error: invalid settings: ORDERSYS_RPC_TIMEOUT")
    assert "Traceback" not in err
