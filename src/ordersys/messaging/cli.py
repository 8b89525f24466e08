"""``ordersys dlq``: look at dead letters, re-drive them, or drop them."""

from __future__ import annotations

import argparse
from typing import Any

from ordersys.messaging.consumer import registered_queues
from ordersys.messaging.dlq import DeadLetters
from ordersys.settings import load_settings


def _letters(args: argparse.Namespace) -> DeadLetters:
    return DeadLetters(load_settings().rabbitmq_url, args.queue)


def list_queues(_: argparse.Namespace) -> int:
    settings = load_settings()
    queues = registered_queues(settings)
    if not queues:
        print("no consumer queues are registered")
    for queue in queues:
        count = DeadLetters(settings.rabbitmq_url, queue).count()
        print(f"{count:>8}  {queue}.dlq")
    return 0


def show(args: argparse.Namespace) -> int:
    for letter in _letters(args).peek(args.limit):
        print(f"{letter.message_id}  {letter.message_type}  {letter.reason}")
        print(f"    {letter.body[:300].decode(errors='replace')}")
    return 0


def replay(args: argparse.Namespace) -> int:
    moved = _letters(args).replay()
    print(f"re-drove {moved} dead letter(s) to {args.queue}")
    return 0


def purge(args: argparse.Namespace) -> int:
    if not args.yes:
        print(f"this deletes every dead letter of {args.queue}; add --yes to do it")
        return 1
    print(f"deleted {_letters(args).purge()} dead letter(s) of {args.queue}")
    return 0


def add_commands(commands: Any) -> None:
    """Register ``dlq list|show|replay|purge`` on the ``ordersys`` parser."""
    dlq = commands.add_parser("dlq", help="dead-letter queues of consumers")
    actions = dlq.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="dead letters per consumer queue").set_defaults(
        func=list_queues
    )
    for name, func, help_text in (
        ("show", show, "print dead letters with their reasons"),
        ("replay", replay, "move dead letters back to their queue"),
        ("purge", purge, "delete dead letters"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("queue", help="the consumer queue, as `dlq list` names it")
        action.set_defaults(func=func)
        if name == "show":
            action.add_argument("--limit", type=int, default=20)
        if name == "purge":
            action.add_argument("--yes", action="store_true", help="really delete")
