"""Users: registration and profile.

The uniqueness of an email address spans all users, so it is the users
service's to enforce (one user per normalized address); a user checks only its
own rules.
"""

from __future__ import annotations

import re

from ordersys import Aggregate, InvalidInput, event

ROLES = ("customer", "admin")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(email: str) -> str:
    """``email`` lower-cased and stripped; :class:`InvalidInput` if it is not one."""
    normalized = email.strip().lower()
    if not _EMAIL.match(normalized) or len(normalized) > 254:
        raise InvalidInput(f"{email!r} is not an email address", field="email")
    return normalized


def _name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > 100:
        raise InvalidInput("a name needs 1 to 100 characters", field="name")
    return cleaned


class User(Aggregate):
    """A registered user, customer or admin."""

    class UserRegistered(Aggregate.Created):
        email: str
        name: str
        password_hash: str
        role: str

    class UserUpdated(Aggregate.Event):
        name: str

    @event(UserRegistered)
    def __init__(self, email: str, name: str, password_hash: str, role: str) -> None:
        self.email = email
        self.name = name
        self.password_hash = password_hash
        self.role = role

    @classmethod
    def register(
        cls, email: str, name: str, password_hash: str, role: str = "customer"
    ) -> User:
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
        return cls(normalize_email(email), _name(name), password_hash, role)

    def update_profile(self, name: str) -> None:
        """Change the name; the same name again records nothing."""
        cleaned = _name(name)
        if cleaned != self.name:
            self._updated(cleaned)

    @event(UserUpdated)
    def _updated(self, name: str) -> None:
        self.name = name
