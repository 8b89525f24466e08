"""Users: given, when, then."""

from __future__ import annotations

import pytest

from ordersys import InvalidInput
from ordersys.shop.users.domain import User, normalize_email
from ordersys.shop.users.passwords import hash_password, verify_password
from tests.unit.shop.specs import given, recorded


def test_registering_records_the_normalized_email_and_the_hash() -> None:
    user = User.register(" Ann@Example.COM ", "Ann  Lee", "hash")

    assert recorded(user) == [
        (
            "UserRegistered",
            {
                "email": "ann@example.com",
                "name": "Ann Lee",
                "password_hash": "hash",
                "role": "customer",
            },
        )
    ]


@pytest.mark.parametrize("email", ["", "ann", "ann@", "@example.com", "a b@c.de"])
def test_an_invalid_email_is_refused(email: str) -> None:
    with pytest.raises(InvalidInput, match="not an email address"):
        User.register(email, "Ann", "hash")


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(InvalidInput, match="role must be one of customer, admin"):
        User.register("ann@example.com", "Ann", "hash", role="root")


def test_updating_the_profile_records_the_new_name() -> None:
    user = given(User.register("ann@example.com", "Ann", "hash"))

    user.update_profile("Ann Smith")

    assert recorded(user) == [("UserUpdated", {"name": "Ann Smith"})]


def test_the_same_name_again_records_nothing() -> None:
    user = given(User.register("ann@example.com", "Ann", "hash"))

    user.update_profile(" Ann ")

    assert recorded(user) == []


def test_an_empty_name_is_refused() -> None:
    user = given(User.register("ann@example.com", "Ann", "hash"))

    with pytest.raises(InvalidInput, match="name"):
        user.update_profile("   ")


def test_passwords_are_hashed_with_argon2_and_verified() -> None:
    password_hash = hash_password("correct horse")

    assert password_hash.startswith("$argon2id$")
    assert verify_password(password_hash, "correct horse")
    assert not verify_password(password_hash, "wrong horse")
    assert not verify_password("not a hash", "correct horse")


def test_a_short_password_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at least 8 characters"):
        hash_password("short")


def test_email_normalization_is_idempotent() -> None:
    assert normalize_email(normalize_email(" X@Y.Org")) == "x@y.org"
