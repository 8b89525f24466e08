"""Applications: saving, loading, optimistic concurrency, snapshots, upcasting."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from ordersys import Aggregate, Application, Conflict, InvalidInput, NotFound, event
from ordersys.settings import Settings, load_settings
from tests.unit.accounts import Account, Bank


def test_write_returns_the_version_and_the_position_for_read_your_writes(
    memory_settings: Settings,
) -> None:
    bank = Bank(memory_settings)
    account = Account("ann", Decimal(0))
    account.deposit(Decimal(5))

    written = bank.write(account)

    assert (written.aggregate_id, written.version, written.position) == (
        account.id,
        2,
        2,
    )
    assert bank.head_position() == 2


def test_get_of_an_unknown_id_raises_not_found(memory_settings: Settings) -> None:
    with pytest.raises(NotFound, match="Account"):
        Bank(memory_settings).get(Account, uuid4())


def test_get_with_a_stale_expected_version_raises_conflict(
    memory_settings: Settings,
) -> None:
    bank = Bank(memory_settings)
    account = Account("ann", Decimal(0))
    bank.write(account)

    with pytest.raises(Conflict, match="version 1, not 3"):
        bank.get(Account, account.id, expected_version=3)


def test_two_writers_of_one_version_the_second_gets_conflict(
    memory_settings: Settings,
) -> None:
    bank = Bank(memory_settings)
    account = Account("ann", Decimal(0))
    bank.write(account)
    first, second = bank.get(Account, account.id), bank.get(Account, account.id)
    first.deposit(Decimal(1))
    second.deposit(Decimal(2))
    bank.write(first)

    with pytest.raises(Conflict):
        bank.write(second)

    assert bank.get(Account, account.id).balance == 1


def test_snapshot_intervals_come_from_settings_by_aggregate_name() -> None:
    bank = Bank(
        load_settings({"persistence": "memory", "snapshot_intervals": {"Account": 2}})
    )
    account = Account("ann", Decimal(0))
    for _ in range(3):
        account.deposit(Decimal(1))
    bank.write(account)

    assert bank.snapshots is not None
    snapshots = list(bank.snapshots.get(account.id))
    assert [s.originator_version for s in snapshots] == [2, 4]
    assert bank.get(Account, account.id).balance == 3


def test_a_snapshot_interval_for_an_unknown_aggregate_names_the_setting() -> None:
    settings = load_settings(
        {"persistence": "memory", "snapshot_intervals": {"Acount": 2}}
    )

    with pytest.raises(InvalidInput, match=r"ORDERSYS_SNAPSHOT_INTERVALS.*'Acount'"):
        Bank(settings)


class Tag(Aggregate):
    """Version 2 of an aggregate whose event gained a field."""

    class Named(Aggregate.Created):
        name: str
        colour: str
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            state["colour"] = "grey"

    @event(Named)
    def __init__(self, name: str, colour: str) -> None:
        self.name = name
        self.colour = colour


class Tags(Application):
    pass


def test_events_written_by_the_old_class_are_read_through_the_upcaster(
    memory_settings: Settings,
) -> None:
    tags = Tags(memory_settings)
    tag_id = uuid4()
    # An event as version 1 of Tag.Named stored it: no colour, no class_version.
    v1_state = tags.mapper.transcoder.encode(
        {
            "name": "urgent",
            "timestamp": Tag.Named.create_timestamp(),
            "originator_topic": "tests.unit.test_application:Tag",
        }
    )
    tags.recorder.insert_events(
        [
            StoredEvent(
                originator_id=tag_id,
                originator_version=1,
                topic="tests.unit.test_application:Tag.Named",
                state=v1_state,
            )
        ]
    )

    tag = tags.get(Tag, tag_id)

    assert (tag.name, tag.colour) == ("urgent", "grey")
