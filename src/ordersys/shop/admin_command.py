"""``ordersys admin create``: the first admin, made through the users service.

The API makes customers only; an admin makes other admins with
``POST /admin/users``. The password is read from a prompt (twice, hidden), or
from the first line of standard input when that is not a terminal, so that a
script can pipe it in; it never appears on the command line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any, TextIO

import typer

from ordersys.errors import InvalidInput
from ordersys.shop.settings import load_shop_settings
from ordersys.terminal import console
from ordersys.transport import Envelope, Transport

app = typer.Typer(help="Administrators of the bundled system.", no_args_is_help=True)


def read_password(stdin: TextIO, ask: Callable[[], str]) -> str:
    """The new password: ``ask()`` on a terminal, else the first line of
    ``stdin``."""
    if stdin.isatty():
        return ask()
    password = stdin.readline().rstrip("\r\n")
    if not password:
        raise InvalidInput("no password on standard input", field="password")
    return password


def _prompt() -> str:
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def create_admin(
    transport: Transport, email: str, name: str, password: str, timeout: float
) -> dict[str, Any]:
    """Register an admin with the users service; its reply (the user's id)."""
    body = {"email": email, "name": name, "password": password, "role": "admin"}
    reply: dict[str, Any] = transport.call(
        "users", Envelope.new("user.create", body), timeout
    )
    return reply


def open_transport() -> Transport:
    """The transport to the running services (the broker's, by default)."""
    from ordersys.transport.rabbitmq import KombuTransport

    settings = load_shop_settings()
    return KombuTransport.from_settings(settings)


@app.command()
def create(
    email: Annotated[str, typer.Option(help="The admin's e-mail address (login).")],
    name: Annotated[str, typer.Option(help="The admin's name.")] = "Admin",
) -> int:
    """Create an admin; the password is asked for, or read from standard input."""
    password = read_password(sys.stdin, _prompt)
    transport = open_transport()
    try:
        reply = create_admin(
            transport, email, name, password, load_shop_settings().rpc_timeout
        )
    finally:
        transport.close()
    console.print(
        f"admin {email} created (user id {reply['aggregate_id']})", markup=False
    )
    return 0
