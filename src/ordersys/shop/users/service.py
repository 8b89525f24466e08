"""The users service's application and handlers."""

from __future__ import annotations

from typing import Any

from ordersys import Application, CommandBus, Conflict, QueryBus, Written
from ordersys.shop.users.commands import GetUser, RegisterUser, UpdateUser
from ordersys.shop.users.domain import User
from ordersys.shop.users.passwords import hash_password


class Users(Application):
    aggregate_types = (User,)


def profile(user: User) -> dict[str, Any]:
    """What other services may see of a user (never the password hash)."""
    return {
        "user_id": str(user.id),
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "version": user.version,
    }


def register_handlers(commands: CommandBus, queries: QueryBus, users: Users) -> None:
    """Route the users service's commands and queries to ``users``."""

    @commands.handles(RegisterUser)
    def register(command: RegisterUser) -> Written:
        user = User.register(
            command.email,
            command.name,
            hash_password(command.password.get_secret_value()),
            command.role,
        )
        try:
            return users.write(user)
        except Conflict:
            raise Conflict(
                f"{user.email} is already registered", field="email"
            ) from None

    @commands.handles(UpdateUser)
    def update(command: UpdateUser) -> Written:
        user = users.get(User, command.user_id)
        user.update_profile(command.name)
        return users.write(user)

    @queries.handles(GetUser)
    def get(query: GetUser) -> dict[str, Any]:
        return profile(users.get(User, query.user_id))
