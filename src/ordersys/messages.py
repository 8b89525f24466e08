"""Typed message base classes: commands and queries are pydantic models."""

from __future__ import annotations

from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ordersys.errors import InvalidInput

T = TypeVar("T")


class Message(BaseModel):
    """An immutable, validated message.

    ``message_type`` is the stable name used on the wire (e.g. ``order.create``);
    ``message_version`` lets a contract change without breaking old senders.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_type: ClassVar[str] = ""
    message_version: ClassVar[int] = 1

    def __init__(self, /, **data: Any) -> None:
        """Validate ``data``; a bad field raises :class:`InvalidInput` naming
        each field that is wrong by its dotted path (``lines.0.quantity``)."""
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise invalid_input(type(self).message_type, e) from None

    # Tells pydantic that this __init__ validates as its own does, so that it
    # is not called for a message nested in another: the outer one then names
    # the nested field by its whole path.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return refuse_nul(value)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "message_type" not in cls.__dict__:
            cls.message_type = cls.__name__

    @classmethod
    def parse(cls, data: Any) -> Self:
        """Validate ``data``; a bad payload raises :class:`InvalidInput`
        naming each field that is wrong."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise invalid_input(cls.message_type, e) from None


def refuse_nul(value: T) -> T:
    """``value``; ValueError if it, or a string in it, holds U+0000.

    PostgreSQL's text and jsonb cannot hold that character: a message carrying
    it would be accepted, then stop every read model it reaches."""
    if _holds_nul(value):
        raise ValueError("must not contain the NUL character (\\u0000)")
    return value


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple | set | frozenset):
        return any(_holds_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    return False


def invalid_input(what: str, error: ValidationError) -> InvalidInput:
    """Turn a pydantic error into :class:`InvalidInput` with one entry per field."""
    fields = [
        {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
        for err in error.errors()
    ]
    summary = "; ".join(f"{f['field'] or '(body)'}: {f['message']}" for f in fields)
    return InvalidInput(f"invalid {what}: {summary}", fields=fields)
