"""Structured logs: one JSON object per line, or a readable line in a terminal.

Context that should appear on every line of a unit of work (the service, a
correlation id, an order id) is bound with :func:`log_context` and carried by a
context variable, so it follows the work across function calls without being
passed around.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

_context: ContextVar[dict[str, Any]] = ContextVar("ordersys_log_context", default={})  # noqa: B039


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log record emitted inside the block."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.fields = {"service": service} if service else {}

    def filter(self, record: logging.LogRecord) -> bool:
        record.context = {**self.fields, **_context.get()}
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "context", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_COLORS = {
    "DEBUG": "\x1b[2m",
    "INFO": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[1;31m",
    "CRITICAL": "\x1b[1;31m",
}
_DIM = "\x1b[2m"
_RESET = "\x1b[0m"


class ConsoleFormatter(logging.Formatter):
    """A readable line for people: time, level, logger, message, then context;
    with ``color``, the level in its colour and the rest dimmed."""

    def __init__(self, *, color: bool = False) -> None:
        super().__init__()
        self.color = color

    def _paint(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.color else text

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(
            f"{k}={v}" for k, v in getattr(record, "context", {}).items()
        )
        time = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        level = self._paint(_COLORS.get(record.levelname, ""), f"{record.levelname:<7}")
        line = (
            f"{self._paint(_DIM, time)} {level} "
            f"{self._paint(_DIM, record.name + ':')} {record.getMessage()}"
        )
        if context:
            line += self._paint(_DIM, f"  [{context}]")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def wants_color(stream: TextIO) -> bool:
    """Colour on a terminal, unless ``NO_COLOR`` is set; ``FORCE_COLOR`` asks for
    it through a pipe (a launcher passing a terminal's lines on)."""
    if os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or stream.isatty()


def configure_logging(
    level: str = "INFO",
    log_format: str = "auto",
    *,
    stream: TextIO | None = None,
    service: str | None = None,
) -> None:
    """Send ordersys' logs to ``stream`` (stderr), every line naming ``service``:
    ``json`` lines, ``console`` lines for people, or ``auto``: console lines on
    a terminal, JSON lines when the output goes to a file or a program."""
    stream = stream or sys.stderr
    if log_format == "auto":
        log_format = "console" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.addFilter(_ContextFilter(service))
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else ConsoleFormatter(color=wants_color(stream))
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
