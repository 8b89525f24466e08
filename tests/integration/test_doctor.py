"""`ordersys doctor` against the real servers, against a closed port, and on
the embedded mode's data directory."""

from __future__ import annotations

from pathlib import Path

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


def test_doctor_in_the_embedded_mode_checks_only_the_data_directory(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ORDERSYS_PERSISTENCE", "sqlite")
    monkeypatch.setenv("ORDERSYS_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:1//")
    monkeypatch.setenv("ORDERSYS_DATA_DIR", str(tmp_path / "data"))

    assert main(["doctor"]) == 0

    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"ok   data dir  {tmp_path / 'data'} will be created, ")
    assert line.endswith(" GB free")


def test_a_data_directory_that_cannot_be_made_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    assert main(["doctor", "--embedded", "--data-dir", str(blocker / "data")]) == 1

    out = capsys.readouterr().out
    assert out.startswith(f"DOWN data dir  {blocker / 'data'} cannot be created in ")
