"""The gateway's request and response bodies, with examples for the OpenAPI
document. Request models forbid unknown fields, and none of them has a price,
a total, a status or a role a client could set (no mass assignment): prices
come from the catalog, the owner from the token."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from ordersys.messages import refuse_nul

Status = Literal[
    "PENDING", "SUBMITTED", "CONFIRMED", "CANCELLED", "SHIPPED", "DELIVERED"
]

_EMAIL = "ann@example.com"
_ORDER = "0b6f4f3e-2a5d-4c1e-9a53-8d2a7c1f0e11"
_PRODUCT = "5c9d1e7a-3f1b-4b2e-8c4d-2e6f7a8b9c0d"
_USER = "7d3e2b1a-9c8f-5e4d-a3b2-c1d0e9f8a7b6"

LARGEST = 2**53 - 1
"""The largest version or position taken: beyond 64 bits the transport cannot
encode it (a 500, not a 422); and a bound of 2**63 - 1 reads as 2**63 to JSON
schema tools that compare in floats, so it is the largest exact one."""


Text = Annotated[
    str,
    AfterValidator(refuse_nul),
    Field(json_schema_extra={"pattern": r"^[^\x00]*$"}),
]
"""Free text a client sends: the services refuse U+0000 (PostgreSQL cannot
store it), so the gateway does too, with the same message, and its OpenAPI
document says so with a pattern."""

# Python's whitespace (what str.strip and str.split take away), spelled out:
# ECMAScript's \s, which the OpenAPI document's pattern is read with, differs.
_SPACE = (
    r"\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Words = Annotated[
    Text,
    AfterValidator(_not_blank),
    Field(json_schema_extra={"pattern": rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"}),
]
"""Free text that the services strip of whitespace (a name, a reason), which
must hold something else."""


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


def _out(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


# -- users and tokens ---------------------------------------------------------


# The users service's rule for an email address, spelled so that Python's,
# pydantic's and the OpenAPI document's (ECMAScript) regular expressions agree on
# it: their \s differ on \x1c-\x1f and on \x85 (NEL), so those are named.
EMAIL_PATTERN = (
    r"^[^@\s\x00\x1c-\x1f\x85]+@[^@\s\x00\x1c-\x1f\x85]+\.[^@\s\x00\x1c-\x1f\x85]+$"
)


class Registration(BaseModel):
    model_config = _examples(
        {"email": _EMAIL, "name": "Ann Smith", "password": "correct horse battery"}
    )

    email: str = Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)
    name: Words = Field(min_length=1, max_length=100)
    password: Text = Field(min_length=8, max_length=200)


class NewUser(Registration):
    """An admin creates a user with a role."""

    model_config = _examples(
        {
            "email": "bob@example.com",
            "name": "Bob Admin",
            "password": "correct horse battery",
            "role": "admin",
        }
    )

    role: Literal["customer", "admin"] = "customer"


class Login(BaseModel):
    model_config = _examples({"email": _EMAIL, "password": "correct horse battery"})

    email: Text = Field(min_length=1, max_length=254)
    password: Text = Field(min_length=1, max_length=200)


class Refresh(BaseModel):
    model_config = _examples({"refresh_token": "eyJhbGciOiJIUzI1NiIs..."})

    refresh_token: Text = Field(min_length=1, max_length=4096)


class TokenPair(BaseModel):
    model_config = _out(
        {
            "access_token": "eyJhbGciOiJIUzI1NiIs...",
            "refresh_token": "eyJhbGciOiJIUzI1NiIs...",
            "token_type": "bearer",
            "expires_in": 300,
        }
    )

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds the access token is valid.")


class Profile(BaseModel):
    model_config = _out(
        {
            "user_id": _USER,
            "email": _EMAIL,
            "name": "Ann Smith",
            "role": "customer",
            "version": 1,
        }
    )

    user_id: UUID
    email: str
    name: str
    role: Literal["customer", "admin"]
    version: int


class ProfileChange(BaseModel):
    model_config = _examples({"name": "Ann Jones"})

    name: Words = Field(min_length=1, max_length=100)


# -- what a write produced ----------------------------------------------------


class Written(BaseModel):
    """What a write produced: pass ``position`` as ``after_position`` to a read
    to see this write (read-your-writes)."""

    model_config = _out({"id": _ORDER, "version": 3, "position": 1234})

    id: UUID = Field(description="The aggregate written.")
    version: int = Field(description="Its version after the write.")
    position: int | None = Field(
        None, description="Position of the write; pass it as after_position."
    )


# -- products -----------------------------------------------------------------


class Product(BaseModel):
    model_config = _out(
        {
            "product_id": _PRODUCT,
            "sku": "BOOK-1",
            "name": "A good book",
            "price_cents": 1299,
            "currency": "EUR",
            "discontinued": False,
            "available": 10,
        }
    )

    product_id: UUID
    sku: str
    name: str
    price_cents: int
    currency: str
    discontinued: bool = False
    available: int = 0


class ProductPage(BaseModel):
    products: list[Product]
    total: int
    limit: int
    offset: int


class NewProduct(BaseModel):
    model_config = _examples(
        {
            "sku": "BOOK-1",
            "name": "A good book",
            "price_cents": 1299,
            "currency": "EUR",
            "stock": 10,
        }
    )

    sku: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")
    name: Words = Field(min_length=1, max_length=200)
    price_cents: int = Field(gt=0, le=100_000_000)
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    stock: int = Field(0, ge=0, le=1_000_000)


class ProductCreated(BaseModel):
    model_config = _out({"product_id": _PRODUCT})

    product_id: UUID


class StockAddition(BaseModel):
    model_config = _examples({"quantity": 25})

    quantity: int = Field(gt=0, le=1_000_000)


class Stock(BaseModel):
    model_config = _out({"product_id": _PRODUCT, "available": 35})

    product_id: UUID
    available: int


class PriceChange(BaseModel):
    model_config = _examples({"price_cents": 1499})

    price_cents: int = Field(gt=0, le=100_000_000)


# -- orders -------------------------------------------------------------------


class Item(BaseModel):
    """A product and how many; its price is the catalog's."""

    model_config = _examples({"product_id": _PRODUCT, "quantity": 2})

    product_id: UUID
    quantity: int = Field(gt=0, le=1000)


class NewOrder(BaseModel):
    model_config = _examples(
        {"items": [{"product_id": _PRODUCT, "quantity": 2}], "submit": True},
        {"items": []},
    )

    items: list[Item] = Field(default_factory=list, max_length=100)
    submit: StrictBool = Field(
        False, description="Check out at once (else add items, then submit)."
    )


class NewItem(Item):
    model_config = _examples(
        {"product_id": _PRODUCT, "quantity": 1, "expected_version": 1}
    )

    expected_version: int | None = Field(
        None,
        ge=1,
        le=LARGEST,
        description="Refuse (409) if the order changed since this version.",
    )


class Submission(BaseModel):
    model_config = _examples({"expected_version": 2}, {})

    expected_version: int | None = Field(None, ge=1, le=LARGEST)


class Cancellation(BaseModel):
    model_config = _examples({"reason": "changed my mind", "expected_version": 2}, {})

    reason: Words = Field("cancelled by the customer", min_length=1, max_length=500)
    expected_version: int | None = Field(None, ge=1, le=LARGEST)


class Line(BaseModel):
    product_id: UUID
    quantity: int
    unit_price_cents: int


class Order(BaseModel):
    model_config = _out(
        {
            "order_id": _ORDER,
            "customer_id": _USER,
            "status": "CONFIRMED",
            "reason": "",
            "lines": [
                {"product_id": _PRODUCT, "quantity": 2, "unit_price_cents": 1299}
            ],
            "total_cents": 2598,
            "version": 3,
            "placed_at": "2026-11-26T10:00:00+00:00",
            "updated_at": "2026-11-26T10:00:01+00:00",
        }
    )

    order_id: UUID
    customer_id: UUID
    status: Status
    reason: str = ""
    lines: list[Line]
    total_cents: int
    version: int
    placed_at: str
    updated_at: str


class OrderPage(BaseModel):
    orders: list[Order]
    total: int
    limit: int
    offset: int


class Payment(BaseModel):
    model_config = _out(
        {
            "order_id": _ORDER,
            "amount_cents": 2598,
            "status": "CAPTURED",
            "provider_reference": "sim-123",
            "reason": "",
            "version": 1,
        }
    )

    order_id: UUID
    amount_cents: int
    status: str = Field(
        description="NONE (not taken yet), PENDING, CAPTURED, DECLINED or REFUNDED."
    )
    provider_reference: str | None = None
    reason: str | None = None
    version: int


class NotificationPage(BaseModel):
    notifications: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


class Analytics(BaseModel):
    model_config = _out(
        {
            "revenue_per_day": [{"day": "2026-11-26", "revenue_cents": 2598}],
            "orders_by_status": {"CONFIRMED": 1},
            "top_products": [{"product_id": _PRODUCT, "quantity": 2}],
            "conversion": {"submitted": 1, "confirmed": 1, "rate": 1.0},
            "saga_duration_seconds": {"p50": 0.2, "p99": 0.4},
        }
    )

    revenue_per_day: list[dict[str, Any]]
    orders_by_status: dict[str, int]
    top_products: list[dict[str, Any]]
    conversion: dict[str, Any]
    saga_duration_seconds: dict[str, Any]


# -- operations ---------------------------------------------------------------


class DeadLetterQueue(BaseModel):
    model_config = _out({"queue": "ordersys.orders.commands", "count": 2})

    queue: str
    count: int


class DeadLetter(BaseModel):
    message_id: str
    message_type: str
    reason: str
    body: str


class Moved(BaseModel):
    model_config = _out({"queue": "ordersys.orders.commands", "count": 2})

    queue: str
    count: int


class Health(BaseModel):
    model_config = _out({"status": "ok", "checks": {"redis": "ok", "rabbitmq": "ok"}})

    status: Literal["ok"]
    checks: dict[str, str] = Field(default_factory=dict)
