"""The users service's commands (message names of the original design)."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field, SecretStr

from ordersys import Command, Query


class RegisterUser(Command):
    message_type = "user.create"
    email: str = Field(max_length=254)
    name: str = Field(max_length=100)
    password: SecretStr
    role: Literal["customer", "admin"] = "customer"


class UpdateUser(Command):
    message_type = "user.update"
    user_id: UUID
    name: str = Field(max_length=100)


class GetUser(Query):
    message_type = "user.get"
    user_id: UUID


class AuthenticateUser(Query):
    """Check an email and password; answers the user's profile or
    :class:`~ordersys.errors.Unauthenticated`."""

    message_type = "user.authenticate"
    email: str = Field(max_length=254)
    password: SecretStr
