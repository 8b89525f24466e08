"""What the command lines share: one console, and asking before destroying."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from ordersys.errors import InvalidInput

console = Console(highlight=False, soft_wrap=True)
"""Standard output: colour and live displays on a terminal, plain text elsewhere."""


def confirmed(question: str, *, yes: bool) -> bool:
    """True if ``yes`` was given or the person at the terminal says so; without a
    terminal to ask, :class:`InvalidInput` says to pass ``--yes``."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise InvalidInput(f"{question} Not asked without a terminal: add --yes")
    return typer.confirm(question, default=False)
