"""`ordersys admin create` makes the first admin: the password from a prompt on
a terminal (asked twice, hidden), or from standard input in a script."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from ordersys.service import Service
from ordersys.shop import admin_command
from ordersys.shop.cli import app, main
from ordersys.shop.settings import load_shop_settings
from ordersys.shop.users import composition as users
from ordersys.shop.users.domain import User, user_id
from ordersys.shop.users.passwords import verify_password
from ordersys.system import SharedTransport
from ordersys.transport.memory import MemoryTransport

EMAIL = "root@example.com"


@pytest.fixture
def users_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """The users service in this process; the command reaches it in memory."""
    transport = MemoryTransport()
    service = users.build(load_shop_settings({"persistence": "memory"}), transport)
    monkeypatch.setattr(
        admin_command, "open_transport", lambda: SharedTransport(transport)
    )
    with service:
        yield service


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The command line points the logs at the standard error of the moment."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level


def stored_admin(service: Service) -> User:
    user = service.applications[0].get(User, user_id(EMAIL))
    assert isinstance(user, User)
    return user


def test_a_piped_password_makes_an_admin(
    users_service: Service,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long admin password\n"))

    assert main(["admin", "create", "--email", EMAIL, "--name", "Root"]) == 0

    admin = stored_admin(users_service)
    assert admin.role == "admin"
    assert verify_password(admin.password_hash, "a long admin password")
    assert capsys.readouterr().out.startswith(f"admin {EMAIL} created (user id ")


def test_on_a_terminal_the_password_is_asked_twice_without_echo(
    users_service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    typed = "a long admin password\na long admin password\n"
    with runner.isolation(input=typed) as (out, *_):
        monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
        code = main(["admin", "create", "--email", EMAIL])
        shown = out.getvalue().decode()

    assert code == 0
    assert shown.count("Password") == 1
    assert "Repeat for confirmation" in shown
    assert "a long admin password" not in shown
    assert verify_password(
        stored_admin(users_service).password_hash, "a long admin password"
    )


def test_no_password_on_standard_input_is_one_error_line(
    users_service: Service,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))

    assert main(["admin", "create", "--email", EMAIL]) == 2

    err = capsys.readouterr().err
    assert err == "ordersys: error: no password on standard input\n"


def test_an_email_registered_already_is_one_error_line(
    users_service: Service,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for _ in range(2):
        monkeypatch.setattr(sys, "stdin", io.StringIO("a long admin password\n"))
        code = main(["admin", "create", "--email", EMAIL])

    assert code == 1
    errors = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert errors == [f"ordersys: error: {EMAIL} is already registered"]


def test_the_command_is_listed_with_its_options() -> None:
    shown = CliRunner().invoke(app, ["admin", "create", "--help"]).output

    assert "--email" in shown
    assert "standard input" in shown
