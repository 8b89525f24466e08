"""Process managers: given these events, when time passes or replies come,
then these commands are sent and the saga is in this state."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from uuid import UUID, uuid4

import pytest

from ordersys import BusinessRuleViolation, InvalidInput, RequestTimeout, load_settings
from ordersys.partitions import Change, fair_share, partition_of
from ordersys.processes import Batch, BusSender, ProcessRunner, Saga, Traces
from ordersys.settings import Settings
from tests.unit.bookings import (
    PAYMENT_WINDOW,
    Booking,
    Bookings,
    Hold,
    HoldExpiry,
    HoldSeats,
    SeatsService,
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class World:
    """Bookings upstream, the hold process, the seats service, a fake clock."""

    def __init__(self, settings: Settings) -> None:
        self.bookings = Bookings(settings)
        self.expiry = HoldExpiry(settings)
        self.seats = SeatsService()
        self.clock = Clock()
        self.runner = ProcessRunner(
            self.expiry, [self.bookings], BusSender(self.seats.bus), clock=self.clock
        )

    def book(self, item: str = "concert") -> Booking:
        booking = Booking(item)
        self.bookings.write(booking)
        return booking

    def pay(self, booking: Booking) -> None:
        booking.pay()
        self.bookings.write(booking)

    def hold(self, booking: Booking) -> Hold:
        hold = self.expiry.saga(Hold, booking.id)
        assert hold is not None
        return hold


@pytest.fixture
def world(memory_settings: Settings) -> World:
    return World(memory_settings)


def test_a_new_booking_holds_seats_and_waits_for_payment(world: World) -> None:
    booking = world.book()

    world.runner.run_until_idle()

    assert world.seats.handled == [("hold", str(booking.id))]
    hold = world.hold(booking)
    assert hold.status == "running"
    assert hold.awaiting == {}
    assert list(hold.deadlines) == ["payment"]


def test_payment_confirms_and_the_deadline_never_fires(world: World) -> None:
    booking = world.book()
    world.runner.run_until_idle()
    world.pay(booking)

    world.runner.run_until_idle()
    world.clock.advance(PAYMENT_WINDOW * 2)
    world.runner.run_until_idle()

    assert world.seats.handled == [
        ("hold", str(booking.id)),
        ("confirm", str(booking.id)),
    ]
    assert world.hold(booking).status == "completed"


def test_no_payment_releases_the_seats_once_the_deadline_falls_due(
    world: World,
) -> None:
    booking = world.book()
    world.runner.run_until_idle()

    world.clock.advance(PAYMENT_WINDOW - timedelta(seconds=1))
    world.runner.run_until_idle()
    assert world.seats.handled == [("hold", str(booking.id))]

    world.clock.advance(timedelta(seconds=2))
    world.runner.run_until_idle()
    world.runner.run_until_idle()

    assert world.seats.handled == [
        ("hold", str(booking.id)),
        ("release", str(booking.id)),
    ]
    hold = world.hold(booking)
    assert (hold.status, hold.reason) == ("failed", "payment not received in time")


def test_a_refused_hold_fails_the_saga_with_the_reason(world: World) -> None:
    booking = world.book("sold out")

    world.runner.run_until_idle()

    hold = world.hold(booking)
    assert (hold.status, hold.reason) == (
        "failed",
        "hold refused: no seats left for sold out",
    )
    assert hold.deadlines == {}


def test_an_event_that_keeps_failing_is_parked_and_others_go_on(world: World) -> None:
    poison = world.book("poison")
    healthy = world.book("concert")

    world.runner.run_until_idle()

    assert world.seats.handled == [("hold", str(healthy.id))]
    [parked] = world.expiry.parked()
    assert parked.application == "Bookings"
    assert "cannot hold seats for poison" in parked.error
    assert world.expiry.saga(Hold, poison.id) is None


def test_a_command_that_keeps_failing_is_answered_with_a_timeout(world: World) -> None:
    calls = []

    def unreachable(command: HoldSeats) -> None:
        calls.append(command)
        raise RequestTimeout("seats did not reply")

    world.seats.bus = type(world.seats.bus)()
    world.seats.bus.register(HoldSeats, unreachable)
    world.runner.sender = BusSender(world.seats.bus)
    booking = world.book()

    world.runner.run_until_idle()

    assert len(calls) == world.runner.max_attempts
    hold = world.hold(booking)
    assert hold.status == "failed"
    assert "failed 5 times" in hold.reason


def test_a_deadline_fires_once_after_a_restart(tmp_path: Path) -> None:
    settings = load_settings(
        {"persistence": "sqlite", "sqlite_path": str(tmp_path / "events.db")}
    )
    before = World(settings)
    booking = before.book()
    before.runner.run_until_idle()
    del before

    after = World(settings)
    after.clock.advance(PAYMENT_WINDOW + timedelta(seconds=1))
    after.runner.run_until_idle()
    again = World(settings)
    again.clock.advance(PAYMENT_WINDOW * 3)
    again.runner.run_until_idle()

    assert after.seats.handled == [("release", str(booking.id))]
    assert again.seats.handled == []
    assert after.hold(booking).reason == "payment not received in time"


def _saga_events(world: World, hold: Hold) -> list[str]:
    return [type(e).__name__ for e in world.expiry.events.get(hold.id)]


def test_a_saga_records_one_event_per_handling_and_replays_to_the_same_state(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        {"persistence": "sqlite", "sqlite_path": str(tmp_path / "events.db")}
    )
    world = World(settings)
    booking = world.book()
    world.runner.run_until_idle()
    world.pay(booking)

    world.runner.run_until_idle()

    kept = world.hold(booking)
    # Started with the hold sent and its deadline set; the hold's reply; the
    # deadline cancelled, the confirmation sent and the saga finished; its reply.
    assert _saga_events(world, kept) == ["Started", "Stepped", "Stepped", "Stepped"]
    replayed = World(settings).hold(booking)
    assert replayed is not kept
    assert (replayed.version, replayed.status, replayed.awaiting) == (
        kept.version,
        "completed",
        {},
    )
    assert replayed.deadlines == kept.deadlines == {}


class BatchSender:
    """Sends each round's commands in one batch; seats.hold is refused."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def send(self, command_type: str, payload: dict[str, Any], command_id: UUID) -> Any:
        raise AssertionError("a sender with send_many is sent batches")

    def send_many(self, batch: Batch, traces: Traces | None = None) -> list[Any]:
        self.batches.append([message_type for message_type, _, _ in batch])
        return [
            BusinessRuleViolation("no seats") if message_type == "seats.hold" else None
            for message_type, _, _ in batch
        ]


def test_a_sender_with_send_many_gets_a_rounds_commands_at_once_and_errors_as_values(
    world: World,
) -> None:
    sender = world.runner.sender = BatchSender()
    first, second = world.book(), world.book()

    world.runner.run_until_idle()

    assert sender.batches == [["seats.hold", "seats.hold"]]
    for booking in (first, second):
        hold = world.hold(booking)
        assert (hold.status, hold.reason) == ("failed", "hold refused: no seats")


def test_an_idle_round_reads_each_upstream_log_once_and_nothing_else(
    world: World,
) -> None:
    world.book()
    world.runner.run_until_idle()
    calls: list[str] = []
    for app in (world.bookings, world.expiry):
        for method in ("select_notifications", "max_tracking_id", "insert_tracking"):
            if hasattr(app.recorder, method):
                original = getattr(app.recorder, method)

                def counted(
                    *args: Any, _name: str = method, _f: Any = original, **kw: Any
                ) -> Any:
                    calls.append(_name)
                    return _f(*args, **kw)

                setattr(app.recorder, method, counted)

    assert world.runner.run_once() == 0
    assert world.runner.run_once() == 0

    assert calls == ["select_notifications", "select_notifications"]


def test_a_saga_written_elsewhere_meanwhile_is_read_again(tmp_path: Path) -> None:
    settings = load_settings(
        {"persistence": "sqlite", "sqlite_path": str(tmp_path / "events.db")}
    )
    world = World(settings)
    booking = world.book()
    world.runner.run_until_idle()
    elsewhere = HoldExpiry(settings)
    changed = elsewhere.saga(Hold, booking.id)
    assert changed is not None
    changed.reissue("seats.hold", {"booking_id": str(booking.id), "item": "concert"})
    elsewhere.write(changed)

    world.pay(booking)
    world.runner.run_until_idle()

    assert world.seats.handled == [
        ("hold", str(booking.id)),
        ("hold", str(booking.id)),
        ("confirm", str(booking.id)),
    ]
    assert world.hold(booking).status == "completed"


def test_a_saga_recorded_one_event_per_change_is_still_driven(world: World) -> None:
    booking_id = uuid4()
    legacy = Hold(key=str(booking_id))
    # As sagas were recorded before a step became one event: each change its own.
    record = super(Saga, legacy).trigger_event
    record(
        Saga.CommandIssued,
        command_id=uuid4(),
        message_type="seats.hold",
        payload={"booking_id": str(booking_id), "item": "concert"},
    )
    record(Saga.DeadlineSet, name="payment", due=world.clock() + PAYMENT_WINDOW)
    world.expiry.write(legacy)
    assert _saga_events(world, legacy) == ["Started", "CommandIssued", "DeadlineSet"]

    world.runner.run_until_idle()
    world.clock.advance(PAYMENT_WINDOW * 2)
    world.runner.run_until_idle()

    assert world.seats.handled == [
        ("hold", str(booking_id)),
        ("release", str(booking_id)),
    ]
    hold = world.expiry.saga(Hold, booking_id)
    assert hold is not None
    assert (hold.status, hold.reason) == ("failed", "payment not received in time")


def test_a_round_reads_back_none_of_the_saga_events_it_recorded(
    world: World,
) -> None:
    world.runner.run_until_idle()
    reads: list[object] = []
    recorder: Any = world.expiry.recorder
    original = recorder.select_notifications

    def counted(*args: Any, **kw: Any) -> Any:
        reads.append(kw.get("start"))
        return original(*args, **kw)

    recorder.select_notifications = counted
    booking = world.book()

    world.runner.run_until_idle()

    # The hold was sent and its reply recorded, from the events kept in memory.
    assert world.seats.handled == [("hold", str(booking.id))]
    assert world.hold(booking).awaiting == {}
    assert reads == []


def test_a_saga_refuses_a_deadline_or_command_of_the_wrong_type(world: World) -> None:
    hold = Hold(key=str(uuid4()))

    with pytest.raises(InvalidInput, match="due"):
        hold.set_deadline("payment", cast(Any, "tomorrow"))
    with pytest.raises(InvalidInput, match="payload"):
        hold.reissue("seats.hold", cast(Any, ["not", "a", "dict"]))

    assert (hold.deadlines, hold.awaiting) == ({}, {})


def test_a_sagas_partition_is_a_stable_hash_of_its_id_spread_over_all() -> None:
    # Given saga ids; when their partitions are computed; then they are
    # CRC-32 of the id's bytes (the same in every process), and cover all
    uuid = UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
    assert (partition_of(uuid, 16), partition_of(uuid, 7)) == (15, 6)
    ids = [Hold.create_id(str(n)) for n in range(1000)]
    assert {partition_of(i, 16) for i in ids} == set(range(16))


def test_a_runners_fair_share_is_the_partitions_over_the_live_runners_rounded_up() -> (
    None
):
    shares = [fair_share(16, runners) for runners in (0, 1, 2, 3, 5, 16, 20)]

    assert shares == [16, 16, 8, 6, 4, 1, 1]


class Fixed:
    """Partitions owned by a test, without leases."""

    def __init__(self, owned: range) -> None:
        self.partitions = 16
        self.owned = frozenset(owned)

    def rebalance(self, before_release: Callable[[int], None]) -> Change:
        return Change()

    def check(self) -> frozenset[int]:
        return self.owned

    def close(self) -> None:
        """Nothing leased."""


def test_runners_owning_half_the_partitions_each_share_the_sagas_from_the_old_position(
    tmp_path: Path,
) -> None:
    # Given a store one runner of every partition wrote (one position for all)
    settings = load_settings(
        {"persistence": "sqlite", "sqlite_path": str(tmp_path / "events.db")}
    )
    before = World(settings)
    first = before.book()
    before.runner.run_until_idle()
    halves = [World(settings), World(settings)]
    for world, owned in zip(halves, (range(8), range(8, 16)), strict=True):
        world.runner.ownership = Fixed(owned)

    # When bookings are made and paid, and each half runs
    made = [halves[0].book() for _ in range(40)]
    for world in halves:
        world.runner.run_until_idle()
    for booking in made:
        halves[1].pay(booking)
    for world in halves:
        world.runner.run_until_idle()

    # Then each booking was held and confirmed once, by the owner of its
    # saga's partition, and the first one was not held again
    for world, owned in zip(halves, (range(8), range(8, 16)), strict=True):
        mine = {
            str(b.id)
            for b in made
            if partition_of(Hold.create_id(str(b.id)), 16) in owned
        }
        assert mine
        assert sorted(world.seats.handled) == sorted(
            [("hold", i) for i in mine] + [("confirm", i) for i in mine]
        )
    assert str(first.id) not in {b for w in halves for _, b in w.seats.handled}
    assert {halves[0].hold(b).status for b in made} == {"completed"}


def test_a_runner_taking_over_partitions_behind_its_own_resends_nothing_it_sent(
    tmp_path: Path,
) -> None:
    # Given two halves, one of which ran further than the other
    settings = load_settings(
        {"persistence": "sqlite", "sqlite_path": str(tmp_path / "events.db")}
    )
    halves = [World(settings), World(settings)]
    for world, owned in zip(halves, (range(8), range(8, 16)), strict=True):
        world.runner.ownership = Fixed(owned)
    early = [halves[0].book() for _ in range(20)]
    for world in halves:
        world.runner.run_until_idle()
    late = [halves[0].book() for _ in range(20)]
    halves[1].runner.run_until_idle()

    # When one runner owns every partition and runs
    whole = World(settings)
    whole.runner.batch_size = 5  # batches that end behind the half ahead
    whole.runner.run_until_idle()

    # Then it held only the late bookings the lagging half had not held
    behind = {
        str(b.id) for b in late if partition_of(Hold.create_id(str(b.id)), 16) < 8
    }
    assert behind
    assert sorted(whole.seats.handled) == sorted(("hold", i) for i in behind)
    assert {whole.hold(b).awaiting == {} for b in early + late} == {True}
    assert whole.expiry.parked() == []
