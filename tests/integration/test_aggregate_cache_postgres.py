"""Aggregates kept in memory between commands, on the real PostgreSQL: a cached
aggregate is read with only the events stored after its version, several
aggregates are read at once, and nothing another writer stored is ever missed
or overwritten."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from ordersys import Conflict, NotFound
from ordersys.commands import CommandBus
from ordersys.persistence.recorders import PostgresEventRecorder
from ordersys.settings import Settings
from ordersys.shop.catalog.commands import (
    CommitInventory,
    DiscontinueProduct,
    ReserveInventory,
)
from ordersys.shop.catalog.domain import Inventory, Product, inventory_id
from ordersys.shop.catalog.service import Catalog, register_handlers
from ordersys.transport import BusRequests, Envelope
from tests.unit.accounts import Account, Bank


@pytest.fixture
def opened(pg_settings: Settings) -> Iterator[Callable[[], Catalog]]:
    """Opens catalogs (instances of the service) on one store, closed afterwards."""
    catalogs: list[Catalog] = []

    def open_catalog() -> Catalog:
        catalogs.append(Catalog(pg_settings))
        return catalogs[-1]

    yield open_catalog
    for catalog in catalogs:
        catalog.close()


def product_with_stock(catalog: Catalog, quantity: int) -> Product:
    product = Product.create(f"SKU-{uuid4().hex[:8].upper()}", "Lamp", 1999)
    stock = Inventory(product_id=product.id)
    stock.add_stock(quantity)
    catalog.write(product, stock)
    return product


def selects(catalog: Catalog) -> list[str]:
    """The reads of events the recorder will make, recorded as they are made."""
    recorder = catalog.recorder
    assert isinstance(recorder, PostgresEventRecorder)
    made: list[str] = []
    read = recorder._read

    def counting(name: str, params: object) -> object:
        made.append(name)
        return read(name, params)  # type: ignore[arg-type]

    recorder._read = counting  # type: ignore[assignment,method-assign]
    return made


def test_a_cached_aggregate_is_read_from_its_version_on(
    opened: Callable[[], Catalog],
) -> None:
    # Given an inventory the catalog has read once
    catalog = opened()
    product = product_with_stock(catalog, 10)
    catalog.inventory(product.id)
    made = selects(catalog)
    recorder = catalog.recorder
    assert isinstance(recorder, PostgresEventRecorder)
    asked: list[int | None] = []
    select = recorder.select_events

    def recording(originator_id: object, **kwargs: int | None) -> list[StoredEvent]:
        asked.append(kwargs.get("gt"))
        return list(select(originator_id, **kwargs))  # type: ignore[arg-type]

    recorder.select_events = recording  # type: ignore[assignment,method-assign]

    # When it is read again
    stock = catalog.inventory(product.id)

    # Then only the events after the cached version were asked for
    assert asked == [2]
    assert made == ["events1000"]
    assert stock.available == 10


def test_a_change_by_another_writer_is_seen_and_a_stale_copy_conflicts(
    opened: Callable[[], Catalog],
) -> None:
    # Given two catalogs (two instances of the service) on the same store,
    # the first of which has the inventory cached
    first, second = opened(), opened()
    product = product_with_stock(first, 10)
    stale = first.inventory(product.id)

    # When the second reserves from it
    theirs = second.inventory(product.id)
    theirs.reserve(uuid4(), 4)
    second.write(theirs)

    # Then the first sees the reservation on its next read
    assert first.inventory(product.id).available == 6
    # And a write from the copy it had before is refused, not a lost update
    stale.reserve(uuid4(), 8)
    with pytest.raises(Conflict):
        first.write(stale)
    assert opened().inventory(product.id).available == 6


def test_a_copy_changed_but_not_written_leaves_the_cache_as_stored(
    opened: Callable[[], Catalog],
) -> None:
    # Given a cached inventory
    catalog = opened()
    product = product_with_stock(catalog, 10)
    # When a command changes its copy and fails before writing
    catalog.inventory(product.id).reserve(uuid4(), 3)

    # Then the next command reads what is stored
    again = catalog.inventory(product.id)
    assert (again.available, again.version) == (10, 2)


def test_several_aggregates_are_read_in_one_read(opened: Callable[[], Catalog]) -> None:
    # Given two products, one of them cached, one changed since by another writer
    catalog, other = opened(), opened()
    lamp, desk = product_with_stock(catalog, 5), product_with_stock(catalog, 7)
    catalog.inventory(lamp.id)
    stock = other.inventory(lamp.id)
    stock.add_stock(1)
    other.write(stock)
    made = selects(catalog)

    # When the catalog reads both inventories and both products
    lines = catalog.stock_lines([lamp.id, desk.id])

    # Then it made one read, and each is as stored
    assert made == ["after"]
    assert [(s.available, p.sku) for s, p in lines] == [
        (6, lamp.sku),
        (7, desk.sku),
    ]
    assert [s.version for s, _ in lines] == [3, 2]


def test_an_aggregate_asked_twice_comes_as_two_copies(
    opened: Callable[[], Catalog],
) -> None:
    catalog = opened()
    lamp = product_with_stock(catalog, 5)

    first, second = catalog.inventories([lamp.id, lamp.id])

    first.reserve(uuid4(), 2)
    assert (first.available, second.available) == (3, 5)


def test_reading_several_names_the_one_missing(opened: Callable[[], Catalog]) -> None:
    catalog = opened()
    lamp = product_with_stock(catalog, 5)
    unknown = uuid4()

    with pytest.raises(NotFound) as raised:
        catalog.stock_lines([lamp.id, unknown])

    assert raised.value.message == f"Inventory {inventory_id(unknown)} not found"
    with pytest.raises(NotFound, match=f"Product {inventory_id(lamp.id)} not found"):
        catalog.get_many(Product, [inventory_id(lamp.id)])


def commands(catalog: Catalog) -> CommandBus:
    bus = CommandBus()
    register_handlers(bus, catalog)
    return bus


def test_a_reservation_asked_again_after_a_crash_changes_nothing(
    opened: Callable[[], Catalog],
) -> None:
    # Given an order reserved by one instance of the catalog
    first, restarted = opened(), opened()
    lamp = product_with_stock(first, 5)
    order_id = uuid4()
    reserve = ReserveInventory(
        order_id=order_id, lines=[{"product_id": lamp.id, "quantity": 2}]
    )
    commands(first).dispatch(reserve)

    # When the saga asks again, of the first and of another instance
    commands(first).dispatch(reserve)
    commands(restarted).dispatch(reserve)

    # Then the order holds one reservation
    stock = opened().inventory(lamp.id)
    assert (stock.available, stock.version) == (3, 3)
    # And committing it twice takes it out once
    commit = CommitInventory(order_id=order_id, product_ids=[lamp.id])
    commands(restarted).dispatch(commit)
    commands(first).dispatch(commit)
    stock = opened().inventory(lamp.id)
    assert (stock.on_hand, stock.available, stock.version) == (3, 3, 4)


def test_a_product_discontinued_elsewhere_is_not_reserved(
    opened: Callable[[], Catalog],
) -> None:
    # Given a catalog that has reserved a product (so has it cached)
    first, second = opened(), opened()
    lamp = product_with_stock(first, 5)
    commands(first).dispatch(
        ReserveInventory(
            order_id=uuid4(), lines=[{"product_id": lamp.id, "quantity": 1}]
        )
    )

    # When another instance discontinues it
    commands(second).dispatch(DiscontinueProduct(product_id=lamp.id))

    # Then the first refuses the next reservation
    with pytest.raises(Exception, match="discontinued"):
        commands(first).dispatch(
            ReserveInventory(
                order_id=uuid4(), lines=[{"product_id": lamp.id, "quantity": 1}]
            )
        )


def test_the_fast_read_of_one_aggregate_is_the_library_s(
    opened: Callable[[], Catalog],
) -> None:
    catalog = opened()
    lamp = product_with_stock(catalog, 5)
    stock = catalog.inventory(lamp.id)
    for quantity in (1, 2, 3):
        stock.add_stock(quantity)
    catalog.write(stock)
    recorder = catalog.recorder
    assert isinstance(recorder, PostgresEventRecorder)
    stock_id = inventory_id(lamp.id)
    library = super(PostgresEventRecorder, recorder).select_events

    for kwargs in (
        {},
        {"gt": 2},
        {"lte": 3},
        {"gt": 1, "lte": 4},
        {"desc": True},
        {"desc": True, "limit": 2},
        {"gt": 1, "lte": 4, "desc": True, "limit": 1},
        {"limit": 3},
    ):
        assert recorder.select_events(stock_id, **kwargs) == library(  # type: ignore[arg-type]
            stock_id,
            **kwargs,  # type: ignore[arg-type]
        ), kwargs
    assert recorder.select_events(uuid4()) == []


class TrustingBank(Bank):
    aggregate_cache_size = 100
    aggregate_cache_trusted = True


def test_a_trusted_cache_is_read_without_the_store_and_a_stale_copy_conflicts(
    pg_settings: Settings,
) -> None:
    # Given an account a trusting bank has written (so has in memory), and
    # another instance of the bank on the same store
    first, second = TrustingBank(pg_settings), TrustingBank(pg_settings)
    try:
        account = Account("ann", Decimal(0))
        account.deposit(Decimal(10))
        first.write(account)
        recorder = first.recorder
        assert isinstance(recorder, PostgresEventRecorder)
        made: list[object] = []
        select = recorder.select_events

        def recording(*args: Any, **kwargs: Any) -> Any:
            made.append(args)
            return select(*args, **kwargs)

        recorder.select_events = recording  # type: ignore[method-assign]

        # When it reads the account again, then the other instance changes it
        loaded = first.get(Account, account.id)
        theirs = second.get(Account, account.id)
        theirs.withdraw(Decimal(4))
        second.write(theirs)

        # Then the first read nothing from the store
        assert made == []
        assert loaded.balance == Decimal(10)
        # And a write from its stale copy is refused, not a lost update
        loaded.withdraw(Decimal(8))
        with pytest.raises(Conflict):
            first.write(loaded)
        # And the copy is forgotten: the next read is of the store
        assert first.get(Account, account.id).balance == Decimal(6)
    finally:
        first.close()
        second.close()


def test_reservations_in_hand_together_are_recorded_in_one_transaction(
    opened: Callable[[], Catalog],
) -> None:
    # Given a lamp with 5 in stock, and reservations of 2, 2 and 2 in hand
    catalog = opened()
    lamp = product_with_stock(catalog, 5)
    requests = BusRequests("catalog", [commands(catalog)], [catalog])
    reservations = [
        ReserveInventory(
            order_id=uuid4(), lines=[{"product_id": lamp.id, "quantity": 2}]
        )
        for _ in range(3)
    ]
    inserts: list[int] = []
    insert = catalog.recorder.insert_events

    def counted(events: Any, **kwargs: Any) -> Any:
        inserts.append(len(events))
        return insert(events, **kwargs)

    catalog.recorder.insert_events = counted  # type: ignore[method-assign]

    # When they are run together
    replies = requests.many(
        [Envelope.new(r.message_type, r.model_dump(mode="json")) for r in reservations]
    )

    # Then the first two are reserved, in one transaction, and the third refused
    assert ["error" in reply for reply in replies] == [False, False, True]
    assert "only 1 of product" in replies[2]["error"]["message"]
    assert inserts == [2]
    stock = opened().inventory(lamp.id)
    assert (stock.available, stock.version) == (1, 4)
    assert requests.batches == {"together": 1}
