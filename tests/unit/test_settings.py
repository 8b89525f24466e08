"""Settings come from ORDERSYS_* variables; a bad value names its variable."""

from __future__ import annotations

import pytest

from ordersys import InvalidInput, load_settings
from ordersys.shop.cli import main


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


def test_the_cli_reports_a_bad_setting_in_one_line_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORDERSYS_REDIS_URL", "")
    monkeypatch.setenv("ORDERSYS_RPC_TIMEOUT", "-1")

    assert main(["doctor"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("ordersys: error: invalid settings: ORDERSYS_RPC_TIMEOUT")
    assert "Traceback" not in err
