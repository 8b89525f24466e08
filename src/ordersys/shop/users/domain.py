"""Users: registration and profile.

A user's id is derived from the normalized email address, so two registrations
with one address are two writes of one aggregate id: the event store refuses
the second, atomically, with no index to keep in step.
"""

from __future__ import annotations

import re
from uuid import NAMESPACE_URL, UUID, uuid5

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


def user_id(email: str) -> UUID:
    """The id of the user registered with ``email`` (normalized first)."""
    return uuid5(NAMESPACE_URL, f"ordersys:user:{normalize_email(email)}")


class User(Aggregate):
    """A registered user, customer or admin."""

    class UserRegistered(Aggregate.Created):
        email: str
        name: str
        password_hash: str
        role: str

    class UserUpdated(Aggregate.Event):
        name: str

    @classmethod
    def create_id(cls, email: str) -> UUID:
        return user_id(email)

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
