"""Events declared as nested classes: mypy sees them, their payloads are
validated when the command runs, and a bad value deep in a payload is named by
its dotted path."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ordersys import Aggregate, Application, InvalidInput, event, load_settings

Line = dict[str, Decimal]
"""A line's unit price and quantity."""


class Invoice(Aggregate):
    class Issued(Aggregate.Created):
        customer: str
        lines: list[Line]

    class Noted(Aggregate.Event):
        text: str

    @event(Issued)
    def __init__(self, customer: str, lines: list[Line]) -> None:
        self.customer = customer
        self.lines = lines
        self.notes: list[str] = []

    @event(Noted)
    def note(self, text: str) -> None:
        self.notes.append(text)


class Billing(Application):
    aggregate_types = (Invoice,)


def test_declared_events_are_the_events_recorded() -> None:
    invoice = Invoice("ann", [{"unit_price": Decimal(1), "quantity": Decimal(2)}])
    invoice.note("thanks")

    recorded = invoice.collect_events()

    assert isinstance(recorded[0], Invoice.Issued)
    assert isinstance(recorded[1], Invoice.Noted)
    assert recorded[1].text == "thanks"


def test_a_declared_event_validates_its_payload() -> None:
    invoice = Invoice("ann", [])

    with pytest.raises(InvalidInput, match=r"invalid Invoice\.Noted: text: "):
        invoice.note(42)  # type: ignore[arg-type]


def test_a_nested_error_keeps_its_path() -> None:
    bad_line = {"unit_price": 12.5, "quantity": Decimal(1)}

    with pytest.raises(InvalidInput) as raised:
        Invoice("ann", [{"unit_price": Decimal(1)}, bad_line])  # type: ignore[list-item]

    assert raised.value.details["fields"] == [
        {
            "field": "lines.1.unit_price",
            "message": "Input should be an instance of Decimal",
        }
    ]
    assert "lines.1.unit_price: Input should be an instance of Decimal" in str(
        raised.value
    )


def test_every_bad_field_is_named() -> None:
    with pytest.raises(InvalidInput) as raised:
        Invoice(7, "x")  # type: ignore[arg-type]

    fields = [f["field"] for f in raised.value.details["fields"]]
    assert fields == ["customer", "lines"]


def test_declared_events_are_stored_and_replayed() -> None:
    billing = Billing(load_settings({"persistence": "memory"}))
    invoice = Invoice("ann", [{"unit_price": Decimal("2.50")}])
    invoice.note("paid by card")
    billing.write(invoice)

    loaded = billing.get(Invoice, invoice.id)

    assert loaded.notes == ["paid by card"]
    assert loaded.lines == [{"unit_price": Decimal("2.50")}]
