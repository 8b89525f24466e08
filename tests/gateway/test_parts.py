"""The gateway's parts that need no server: tokens, route templates, problems."""

from __future__ import annotations

import socket
import time
import uuid

import jwt
import pytest

from ordersys.errors import InvalidInput, Unauthenticated
from ordersys.shop.gateway.auth import Tokens, secret_of
from ordersys.shop.gateway.composition import build
from ordersys.shop.gateway.metrics import UNMATCHED, Routes
from ordersys.shop.gateway.placing import plain_order
from ordersys.shop.settings import load_shop_settings
from ordersys.transport.memory import MemoryTransport

KEY = b"k" * 64


def test_a_token_is_checked_once_and_its_expiry_every_time() -> None:
    tokens = Tokens(KEY, access_seconds=1, refresh_seconds=60)
    pair = tokens.issue("user-1", "customer")

    first = tokens.principal(pair["access_token"])
    again = tokens.principal(pair["access_token"])
    time.sleep(2.1)  # past its one-second life (the expiry is in whole seconds)

    assert first == again
    assert first.subject == "user-1"
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.principal(pair["access_token"])


def test_a_refresh_token_is_no_access_token_and_vice_versa() -> None:
    tokens = Tokens(KEY, access_seconds=60, refresh_seconds=60)
    pair = tokens.issue("user-1", "admin")

    with pytest.raises(Unauthenticated):
        tokens.principal(pair["refresh_token"])
    with pytest.raises(Unauthenticated):
        tokens.verify(pair["access_token"], "refresh")
    assert tokens.verify(pair["refresh_token"], "refresh")["role"] == "admin"


def test_tokens_of_another_algorithm_or_key_are_refused() -> None:
    tokens = Tokens(KEY, access_seconds=60, refresh_seconds=60)
    claims = jwt.decode(
        tokens.issue("u", "customer")["access_token"],
        options={"verify_signature": False},
    )

    for forged in (
        jwt.encode(claims, KEY, algorithm="HS384"),
        jwt.encode(claims, b"x" * 32, algorithm="HS256"),
        jwt.encode(claims, None, algorithm="none"),
    ):
        with pytest.raises(Unauthenticated):
            tokens.principal(forged)


def test_the_signing_key_comes_from_settings_and_must_be_long() -> None:
    given = secret_of(load_shop_settings({"jwt_secret": "s" * 32}))
    random_one = secret_of(load_shop_settings({"jwt_secret": ""}))

    assert given == b"s" * 32
    assert len(random_one) == 32
    with pytest.raises(InvalidInput, match="32 characters"):
        secret_of(load_shop_settings({"jwt_secret": "short"}))


def test_paths_are_counted_by_their_route_template() -> None:
    routes = Routes(["/orders", "/orders/{order_id}", "/orders/{order_id}/items/{p}"])
    some = uuid.uuid4()

    assert routes.of("/orders") == "/orders"
    assert routes.of(f"/orders/{some}") == "/orders/{order_id}"
    assert routes.of(f"/orders/{some}/items/{some}") == "/orders/{order_id}/items/{p}"
    assert routes.of(f"/orders/{some}/nope") == UNMATCHED
    assert routes.of("/orders.") == UNMATCHED


def test_a_port_in_use_is_refused_naming_the_setting() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = load_shop_settings(
            {
                "persistence": "memory",
                "jwt_secret": "s" * 32,
                "gateway_port": busy.getsockname()[1],
            }
        )
        gateway = build(settings, MemoryTransport())

        with pytest.raises(InvalidInput, match="ORDERSYS_GATEWAY_PORT"):
            gateway.start()


_P = "6f0c8a52-3b7e-4f41-9d2a-1c5e7b9a0d34"


@pytest.mark.parametrize(
    ("body", "plain"),
    [
        (
            b'{"items":[{"product_id":"%s","quantity":2}]}' % _P.encode(),
            ([(_P, 2)], False),
        ),
        (
            b'{"items":[{"product_id":"%s","quantity":1000}],"submit":true}'
            % _P.encode(),
            ([(_P, 1000)], True),
        ),
        (b'{"items":[]}', None),
        (b'{"items":[{"product_id":"%s","quantity":0}]}' % _P.encode(), None),
        (b'{"items":[{"product_id":"%s","quantity":1001}]}' % _P.encode(), None),
        (b'{"items":[{"product_id":"%s","quantity":true}]}' % _P.encode(), None),
        (b'{"items":[{"product_id":"%s","quantity":1.0}]}' % _P.encode(), None),
        (b'{"items":[{"product_id":"%s","quantity":1}]}' % _P.upper().encode(), None),
        (b'{"items":[{"product_id":"%s","quantity":1,"x":1}]}' % _P.encode(), None),
        (
            b'{"items":[{"product_id":"%s","quantity":1}],"submit":1}' % _P.encode(),
            None,
        ),
        (b'{"items":[{"product_id":"%s","quantity":1}],"total":1}' % _P.encode(), None),
        (b"[]", None),
        (b"not json", None),
    ],
)
def test_only_a_plain_order_skips_the_route(
    body: bytes, plain: tuple[list[tuple[str, int]], bool] | None
) -> None:
    # Anything but the common form is the route's to take, or to refuse.
    assert plain_order(body) == plain
