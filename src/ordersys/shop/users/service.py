"""The users service's application and handlers."""

from __future__ import annotations

from typing import Any

from ordersys import (
    Application,
    CommandBus,
    Conflict,
    InvalidInput,
    NotFound,
    QueryBus,
    Unauthenticated,
    Written,
)
from ordersys.shop.users.commands import (
    AuthenticateUser,
    GetUser,
    RegisterUser,
    UpdateUser,
)
from ordersys.shop.users.domain import User, user_id
from ordersys.shop.users.passwords import hash_password, verify_password

# Checked when the email is unknown, so that a wrong email takes as long as a
# wrong password and the answer's timing does not tell which emails exist.
_UNKNOWN_USER_HASH = hash_password("no user has this password")


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

    @queries.handles(AuthenticateUser)
    def authenticate(query: AuthenticateUser) -> dict[str, Any]:
        password = query.password.get_secret_value()
        try:
            user = users.get(User, user_id(query.email))
        except (NotFound, InvalidInput):
            verify_password(_UNKNOWN_USER_HASH, password)
            raise Unauthenticated("wrong email or password") from None
        if not verify_password(user.password_hash, password):
            raise Unauthenticated("wrong email or password")
        return profile(user)
