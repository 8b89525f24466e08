"""The users service: one user per email, profiles without secrets."""

from __future__ import annotations

from uuid import UUID

import pytest
from pydantic import SecretStr

from ordersys import CommandBus, Conflict, NotFound, QueryBus, load_settings
from ordersys.shop.users.commands import GetUser, RegisterUser, UpdateUser
from ordersys.shop.users.domain import User, user_id
from ordersys.shop.users.passwords import verify_password
from ordersys.shop.users.service import Users, register_handlers


@pytest.fixture
def service() -> tuple[CommandBus, QueryBus, Users]:
    commands, queries = CommandBus(), QueryBus()
    users = Users(load_settings({"persistence": "memory"}))
    register_handlers(commands, queries, users)
    return commands, queries, users


def register(commands: CommandBus, email: str = "ann@example.com") -> UUID:
    written = commands.dispatch(
        RegisterUser(email=email, name="Ann", password=SecretStr("correct horse"))
    )
    return UUID(str(written.aggregate_id))


def test_a_registered_user_has_a_hashed_password_and_an_id_from_the_email(
    service: tuple[CommandBus, QueryBus, Users],
) -> None:
    commands, _, users = service

    registered = register(commands)

    assert registered == user_id("ANN@example.com ")
    stored = users.get(User, registered)
    assert verify_password(stored.password_hash, "correct horse")


def test_an_email_registers_once_whatever_its_case(
    service: tuple[CommandBus, QueryBus, Users],
) -> None:
    commands, _, _ = service
    register(commands)

    with pytest.raises(Conflict, match=r"ann@example\.com is already registered"):
        register(commands, " Ann@Example.com")


def test_the_profile_never_shows_the_password_hash(
    service: tuple[CommandBus, QueryBus, Users],
) -> None:
    commands, queries, _ = service
    registered = register(commands)
    commands.dispatch(UpdateUser(user_id=registered, name="Ann Lee"))

    profile = queries.dispatch(GetUser(user_id=registered))

    assert profile == {
        "user_id": str(registered),
        "email": "ann@example.com",
        "name": "Ann Lee",
        "role": "customer",
        "version": 2,
    }


def test_an_unknown_user_is_not_found(
    service: tuple[CommandBus, QueryBus, Users],
) -> None:
    _, queries, _ = service

    with pytest.raises(NotFound):
        queries.dispatch(GetUser(user_id=user_id("nobody@example.com")))
