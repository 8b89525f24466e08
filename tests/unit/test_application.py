"""Applications: saving, loading, optimistic concurrency, snapshots, upcasting."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from uuid import uuid4

import pytest
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import RecordConflictError, StoredEvent

from ordersys import Aggregate, Application, Conflict, InvalidInput, NotFound, event
from ordersys.errors import StorageTaken
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


def test_the_inherited_save_of_a_stale_version_raises_conflict(
    memory_settings: Settings,
) -> None:
    bank = Bank(memory_settings)
    account = Account("ann", Decimal(0))
    bank.save(account)
    first, second = bank.get(Account, account.id), bank.get(Account, account.id)
    first.deposit(Decimal(1))
    second.deposit(Decimal(2))
    bank.save(first)

    with pytest.raises(Conflict) as raised:
        bank.save(second)

    assert raised.value.details == {"aggregate_id": str(account.id)}
    # Code written for eventsourcing's save still catches it.
    assert isinstance(raised.value, RecordConflictError)


def test_the_repository_raises_not_found_for_an_unknown_id(
    memory_settings: Settings,
) -> None:
    bank = Bank(memory_settings)
    unknown = uuid4()

    with pytest.raises(NotFound, match=str(unknown)) as raised:
        bank.repository.get(unknown)

    assert isinstance(raised.value, AggregateNotFoundError)
    assert unknown not in bank.repository


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


def another_bank() -> type[Application]:
    """A user's own ``Bank``: another class of the same name."""

    class Bank(Application):
        aggregate_types = (Account,)

    return Bank


def test_a_class_that_opens_storage_another_class_owns_is_refused(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        {"persistence": "sqlite", "sqlite_path": str(tmp_path / "events.db")}
    )
    owner = Bank(settings)
    owner.write(Account("ann", Decimal(0)))

    with pytest.raises(StorageTaken) as raised:
        another_bank()(settings)

    message = str(raised.value)
    assert "tests.unit.accounts.Bank" in message
    assert "another_bank.<locals>.Bank" in message
    assert "ORDERSYS_SQLITE_PATH" in message
    assert "name" in message
    assert Bank(settings).head_position() == 1


def test_the_owner_reopens_its_storage(tmp_path: Path) -> None:
    settings = load_settings(
        {"persistence": "sqlite", "sqlite_path": str(tmp_path / "events.db")}
    )
    account = Account("ann", Decimal(0))
    Bank(settings).write(account)

    again = Bank(settings)

    assert again.get(Account, account.id).owner == "ann"


def test_a_class_named_apart_gets_tables_of_its_own_in_the_same_file(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        {"persistence": "sqlite", "sqlite_path": str(tmp_path / "events.db")}
    )
    Bank(settings).write(Account("ann", Decimal(0)))

    class Bank2(another_bank()):  # type: ignore[misc,valid-type]
        name = "OtherBank"

    other = Bank2(settings)
    other.write(Account("bob", Decimal(0)))

    assert (Bank(settings).head_position(), other.head_position()) == (1, 1)


def test_several_aggregates_are_read_at_once_in_the_order_asked(
    memory_settings: Settings,
) -> None:
    bank = Bank(memory_settings)
    ann, bob = Account("ann", Decimal(0)), Account("bob", Decimal(0))
    bob.deposit(Decimal(3))
    bank.write(ann, bob)

    read = bank.get_many(Account, [bob.id, ann.id, bob.id])

    assert [(a.owner, a.balance) for a in read] == [
        ("bob", Decimal(3)),
        ("ann", Decimal(0)),
        ("bob", Decimal(3)),
    ]
    assert read[0] is not read[2]


def test_reading_several_with_an_unknown_id_raises_not_found(
    memory_settings: Settings,
) -> None:
    bank = Bank(memory_settings)
    ann = Account("ann", Decimal(0))
    bank.write(ann)
    unknown = uuid4()

    with pytest.raises(NotFound, match=f"Account {unknown} not found"):
        bank.get_many(Account, [ann.id, unknown])


class CachingBank(Bank):
    aggregate_cache_size = 10


def test_a_cached_aggregate_sees_what_another_writer_stored(
    memory_settings: Settings,
) -> None:
    # Given an account cached by one application
    bank = CachingBank(memory_settings)
    ann = Account("ann", Decimal(0))
    bank.write(ann)
    stale = bank.get(Account, ann.id)

    # When a deposit is written from another copy
    fresh = bank.get(Account, ann.id)
    fresh.deposit(Decimal(7))
    bank.write(fresh)

    # Then the next read has it, and the stale copy cannot be written
    assert bank.get(Account, ann.id).balance == Decimal(7)
    assert bank.get_many(Account, [ann.id])[0].balance == Decimal(7)
    stale.deposit(Decimal(1))
    with pytest.raises(Conflict):
        bank.write(stale)
