"""When the relay records its position, on the real PostgreSQL and RabbitMQ:
at most every ``record_interval`` under a stream, always when it runs out of
events and when it stops; an idle relay's poll reads and writes no checkpoint."""

from __future__ import annotations

import time
from typing import Any

from eventsourcing.persistence import Tracking, TrackingRecorder

from ordersys.messaging.publisher import ConfirmedPublisher
from ordersys.messaging.relay import Relay, checkpoint_for
from ordersys.settings import Settings
from ordersys.testing import eventually
from tests.integration.test_messaging_rabbitmq import (
    INTEGRATION_EVENTS,
    URL,
    open_accounts,
    prefix,
)
from tests.unit.accounts import Bank

__all__ = ["prefix"]  # the fixture, shared with the messaging tests


class CountedCheckpoint(TrackingRecorder):
    """The relay's checkpoint in PostgreSQL, counting its reads and writes."""

    def __init__(self, recorder: TrackingRecorder) -> None:
        self.recorder = recorder
        self.reads = 0
        self.writes: list[int] = []

    def insert_tracking(self, tracking: Tracking) -> None:
        self.recorder.insert_tracking(tracking)
        self.writes.append(tracking.notification_id)

    def max_tracking_id(self, application_name: str) -> int | None:
        self.reads += 1
        return self.recorder.max_tracking_id(application_name)


def relay_of(bank: Bank, prefix: str, **options: Any) -> Relay:
    return Relay(
        bank,
        "bank",
        ConfirmedPublisher(URL, f"{prefix}.events"),
        integration_events=INTEGRATION_EVENTS,
        checkpoint=CountedCheckpoint(checkpoint_for(bank, "relay")),
        **options,
    )


def recorded(bank: Bank) -> int:
    """The position in the relay's checkpoint table, as a restart reads it."""
    return checkpoint_for(bank, "relay").max_tracking_id("relay:bank") or 0


def test_a_stream_of_batches_is_recorded_once_when_the_relay_runs_out_of_events(
    pg_settings: Settings, prefix: str
) -> None:
    # Given 200 events, and a relay sending 10 at a time that records at most
    # once a minute
    bank = Bank(pg_settings)
    open_accounts(bank, 100)
    relay = relay_of(bank, prefix, batch_size=10, record_interval=60.0)
    assert isinstance(relay.checkpoint, CountedCheckpoint)

    # When it sends the 20 batches
    batches = 0
    while relay.run_once():
        batches += 1

    # Then the position is recorded once, when nothing was left to send
    assert batches == 20
    assert relay.checkpoint.writes == [200]
    assert recorded(bank) == relay.position() == 200
    relay.publisher.close()


def test_the_next_batch_after_the_record_interval_records_what_was_confirmed(
    pg_settings: Settings, prefix: str
) -> None:
    # Given a relay that records at most every 0.2s, which has sent a batch
    bank = Bank(pg_settings)
    open_accounts(bank, 20)
    relay = relay_of(bank, prefix, batch_size=10, record_interval=0.2)
    assert isinstance(relay.checkpoint, CountedCheckpoint)
    assert relay.run_once() == 10

    # When it sends the next batch once the interval is over
    time.sleep(0.4)
    assert relay.run_once() == 10

    # Then what is confirmed by then is recorded (the first batch, the second
    # too if its confirms came in time), and the rest when no event is left
    assert relay.checkpoint.writes in ([10], [20])
    while relay.run_once():
        pass
    assert relay.checkpoint.writes[1:] == [40]
    assert recorded(bank) == 40
    relay.publisher.close()


def test_an_idle_relay_polls_without_reading_or_writing_its_checkpoint(
    pg_settings: Settings, prefix: str
) -> None:
    # Given a relay that has relayed everything
    bank = Bank(pg_settings)
    open_accounts(bank, 5)
    relay = relay_of(bank, prefix)
    assert isinstance(relay.checkpoint, CountedCheckpoint)
    while relay.run_once():
        pass
    reads, writes = relay.checkpoint.reads, list(relay.checkpoint.writes)

    # When it polls 20 times with nothing new, then 5 accounts are opened
    for _ in range(20):
        assert relay.run_once() == 0
    open_accounts(bank, 5, owner="later")
    while relay.run_once():
        pass

    # Then it read its checkpoint only when it began, and recorded only the new
    assert reads == relay.checkpoint.reads == 1
    assert writes == [10]
    assert relay.checkpoint.writes == [10, 20]
    relay.publisher.close()


def test_a_relay_stopped_mid_interval_records_what_was_confirmed(
    pg_settings: Settings, prefix: str
) -> None:
    # Given a running relay that records at most once a minute
    bank = Bank(pg_settings)
    relay = relay_of(bank, prefix, record_interval=60.0)
    relay.start(poll_interval=0.01)
    open_accounts(bank, 3)
    assert eventually(lambda: relay.milestones.time_of(6) is not None)

    # When it stops before the minute is over
    relay.stop()

    # Then its checkpoint has the position confirmed
    assert recorded(bank) == 6
