"""A part used without its extra says which extra to install."""

from __future__ import annotations

import pytest

from ordersys import InvalidInput, MissingExtra
from ordersys.extras import loaded_class, needs


def test_a_missing_client_of_an_extra_is_reported_as_that_extra() -> None:
    # When an adapter's client cannot be imported
    with pytest.raises(MissingExtra) as raised, needs("rabbitmq", "KombuTransport"):
        raise ModuleNotFoundError("No module named 'kombu'", name="kombu")

    # Then the error names the extra and how to install it
    assert str(raised.value) == (
        "KombuTransport needs the rabbitmq extra: pip install 'ordersys[rabbitmq]'"
    )
    assert raised.value.details == {"feature": "KombuTransport", "extra": "rabbitmq"}


def test_missing_extra_is_an_invalid_input_and_an_import_error() -> None:
    error = MissingExtra("RedisCache", "redis")

    assert isinstance(error, InvalidInput)
    assert isinstance(error, ImportError)


def test_a_missing_module_that_no_extra_installs_stays_what_it_is() -> None:
    # A typo in ordersys' own imports is a bug, not a missing extra
    with pytest.raises(ModuleNotFoundError) as raised, needs("redis", "RedisCache"):
        raise ModuleNotFoundError("No module named 'redsi'", name="redsi")

    assert not isinstance(raised.value, MissingExtra)


def test_a_class_is_found_only_once_its_module_is_imported() -> None:
    assert loaded_class("ordersys.extras", "MissingExtra") is MissingExtra
    assert loaded_class("ordersys.not_imported_anywhere", "Relay") is None
    assert loaded_class("ordersys.extras", "needs") is None  # not a class
