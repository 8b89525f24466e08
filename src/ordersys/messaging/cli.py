"""``ordersys dlq``: look at dead letters, re-drive them, or drop them."""

from __future__ import annotations

from typing import Annotated

import typer

from ordersys.messaging.consumer import registered_queues
from ordersys.messaging.dlq import DeadLetters
from ordersys.settings import load_settings
from ordersys.terminal import confirmed, console

app = typer.Typer(help="Dead-letter queues of consumers.", no_args_is_help=True)

Queue = Annotated[
    str, typer.Argument(help="The consumer queue, as `dlq list` names it.")
]


def _letters(queue: str) -> DeadLetters:
    return DeadLetters(load_settings().rabbitmq_url, queue)


@app.command("list")
def list_queues() -> int:
    """Dead letters per consumer queue."""
    settings = load_settings()
    queues = registered_queues(settings)
    if not queues:
        console.print("no consumer queues are registered")
    for queue in queues:
        count = DeadLetters(settings.rabbitmq_url, queue).count()
        console.print(f"{count:>8}  {queue}.dlq", markup=False)
    return 0


@app.command()
def show(
    queue: Queue,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 20,
) -> int:
    """Print dead letters with their reasons (they stay where they are)."""
    for letter in _letters(queue).peek(limit):
        console.print(
            f"{letter.message_id}  {letter.message_type}  {letter.reason}", markup=False
        )
        console.print(f"    {letter.body[:300].decode(errors='replace')}", markup=False)
    return 0


@app.command()
def replay(queue: Queue) -> int:
    """Move dead letters back to their queue."""
    moved = _letters(queue).replay()
    console.print(f"re-drove {moved} dead letter(s) to {queue}", markup=False)
    return 0


@app.command()
def purge(
    queue: Queue,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> int:
    """Delete dead letters."""
    if not confirmed(f"Delete every dead letter of {queue}?", yes=yes):
        return 1
    deleted = _letters(queue).purge()
    console.print(f"deleted {deleted} dead letter(s) of {queue}", markup=False)
    return 0
