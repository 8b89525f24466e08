"""`ordersys doctor` against the real servers, and against a closed port."""

from __future__ import annotations

import pytest

from ordersys.shop.cli import main


def test_doctor_reports_every_server_reachable_with_its_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["doctor"]) == 0

    out = capsys.readouterr().out
    assert "ok   PostgreSQL" in out
    assert "RabbitMQ 3." in out
    assert "Redis 7." in out


def test_doctor_names_each_unreachable_server_and_its_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORDERSYS_POSTGRES_PORT", "1")
    monkeypatch.setenv("ORDERSYS_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:1//")
    monkeypatch.setenv("ORDERSYS_REDIS_URL", "redis://127.0.0.1:1/0")

    assert main(["doctor"]) == 1

    out = capsys.readouterr().out
    assert "DOWN PostgreSQL  127.0.0.1:1" in out
    assert "DOWN RabbitMQ    127.0.0.1:1//" in out
    assert "DOWN Redis       127.0.0.1:1/0" in out
    assert "Traceback" not in out
