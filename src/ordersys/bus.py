"""A message bus that routes each message type to exactly one handler.

The command bus and the query bus are both this bus; they differ in the
message base class they accept. Middleware wraps every dispatch, so logging,
timing, metrics and tracing hook in without touching handlers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from ordersys.errors import HandlerNotFound
from ordersys.messages import Message

M = TypeVar("M", bound=Message)
T = TypeVar("T", bound=Message)
H = TypeVar("H", bound=Callable[..., Any])

Handler = Callable[[Any], Any]
Next = Callable[[Message], Any]
Middleware = Callable[[Message, Next], Any]
"""``middleware(message, call_next)`` returns ``call_next(message)``'s result
(or raises); it may do work before and after."""


class MessageBus(Generic[M]):
    """Routes messages of type ``M`` to their single registered handler."""

    accepts: type[Message] = Message

    def __init__(self, middleware: Iterable[Middleware] = ()) -> None:
        self._handlers: dict[type[Message], Handler] = {}
        self._by_name: dict[str, type[Message]] = {}
        self._middleware: list[Middleware] = list(middleware)
        # Each handler wrapped in the middleware, built on first dispatch.
        self._chains: dict[type[Message], Next] = {}

    def register(self, message_type: type[T], handler: Callable[[T], Any]) -> None:
        """Route ``message_type`` to ``handler``; a second handler is an error.
        The handler is typed for ``message_type`` (a lambda sees its fields);
        that it is a message this bus accepts is checked when registering."""
        if not issubclass(message_type, self.accepts):
            msg = f"{message_type.__name__} is not a {self.accepts.__name__}"
            raise TypeError(msg)
        if message_type in self._handlers:
            msg = f"{message_type.__name__} already has a handler"
            raise ValueError(msg)
        self._handlers[message_type] = handler
        self._by_name[message_type.message_type] = message_type

    def handles(self, message_type: type[M]) -> Callable[[H], H]:
        """Decorator form of :meth:`register`."""

        def decorate(handler: H) -> H:
            self.register(message_type, handler)
            return handler

        return decorate

    def add_middleware(self, middleware: Middleware) -> None:
        """Add an outermost middleware (it sees the message first)."""
        self._middleware.insert(0, middleware)
        self._chains.clear()

    @property
    def message_types(self) -> Mapping[str, type[Message]]:
        """Registered message types by their wire name (looked up for every
        message a service receives: a view, not a new dictionary)."""
        return MappingProxyType(self._by_name)

    def dispatch(self, message: M) -> Any:
        """Run ``message`` through the middleware to its handler."""
        call = self._chains.get(type(message))
        if call is None:
            handler = self._handlers.get(type(message))
            if handler is None:
                raise HandlerNotFound(
                    f"no handler for {type(message).message_type}",
                    message_type=type(message).message_type,
                )
            call = handler
            for middleware in reversed(self._middleware):
                call = _bind(middleware, call)
            self._chains[type(message)] = call
        return call(message)


def _bind(middleware: Middleware, call_next: Next) -> Next:
    return lambda message: middleware(message, call_next)
