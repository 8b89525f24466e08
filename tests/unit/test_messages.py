"""Messages are validated as they are made: a bad field is refused with
ordersys' InvalidInput, naming it by its dotted path, however it is made."""

from __future__ import annotations

from uuid import UUID

import pytest

from ordersys import Command, InvalidInput, Message, Query


class Line(Message):
    sku: str
    quantity: int


class PlaceOrder(Command):
    message_type = "order.place"

    customer_id: UUID
    lines: list[Line]


class GetOrder(Query):
    message_type = "order.get"

    order_id: UUID


def fields_of(error: InvalidInput) -> list[str]:
    return [f["field"] for f in error.details["fields"]]


def test_a_command_made_with_a_bad_field_raises_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"invalid order\.place") as raised:
        PlaceOrder(customer_id="nobody", lines=[])  # type: ignore[arg-type]

    assert fields_of(raised.value) == ["customer_id"]


def test_a_query_made_with_an_unknown_field_raises_invalid_input() -> None:
    with pytest.raises(InvalidInput) as raised:
        GetOrder(order_id=UUID(int=1), limit=5)  # type: ignore[call-arg]

    assert fields_of(raised.value) == ["limit"]


def test_a_bad_nested_field_is_named_by_its_whole_path() -> None:
    lines = [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": "two"}]

    with pytest.raises(InvalidInput) as made:
        PlaceOrder(customer_id=UUID(int=1), lines=lines)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput) as parsed:
        PlaceOrder.parse({"customer_id": str(UUID(int=1)), "lines": lines})

    assert fields_of(made.value) == fields_of(parsed.value) == ["lines.1.quantity"]


def test_every_bad_field_is_named() -> None:
    with pytest.raises(InvalidInput) as raised:
        PlaceOrder(customer_id="x", lines=[{"sku": 1}])  # type: ignore[arg-type]

    assert fields_of(raised.value) == [
        "customer_id",
        "lines.0.sku",
        "lines.0.quantity",
    ]


def test_a_good_message_is_made_with_its_nested_messages() -> None:
    order = PlaceOrder(customer_id=UUID(int=1), lines=[Line(sku="A", quantity=2)])

    assert order.lines[0].quantity == 2
    assert PlaceOrder.parse(order.model_dump()) == order


class Note(Command):
    text: str
    tags: list[str] = []


def test_text_holding_a_nul_character_is_refused_by_its_field() -> None:
    # PostgreSQL's text and jsonb cannot store U+0000: such a message would
    # stop the read models it reaches, so it is refused where it is made
    with pytest.raises(InvalidInput, match="NUL character") as flat:
        Note(text="a\x00b")
    with pytest.raises(InvalidInput) as nested:
        PlaceOrder.parse(
            {"customer_id": str(UUID(int=1)), "lines": [{"sku": "\x00", "quantity": 1}]}
        )
    with pytest.raises(InvalidInput) as listed:
        Note(text="fine", tags=["ok", "not\x00ok"])

    assert fields_of(flat.value) == ["text"]
    assert fields_of(nested.value) == ["lines.0.sku"]
    assert fields_of(listed.value) == ["tags"]
    assert Note(text="tab\tand é are fine").text == "tab\tand é are fine"
