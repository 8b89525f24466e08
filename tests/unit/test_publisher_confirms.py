"""The confirm bookkeeping of :class:`ConfirmedPublisher`: the broker's acks
(single or multiple, in any order) as the channel hands them over."""

from __future__ import annotations

from ordersys.messaging.publisher import ConfirmedPublisher


def sent(count: int) -> ConfirmedPublisher:
    """A publisher that has sent ``count`` messages (tags 1 to ``count``)."""
    publisher = ConfirmedPublisher("amqp://guest:guest@127.0.0.1:5672//", "x")
    publisher._next_tag = count + 1  # what send() does per message
    return publisher


def test_a_multiple_ack_confirms_every_tag_up_to_it() -> None:
    publisher = sent(10)

    publisher._on_ack(4, multiple=True)

    assert publisher.in_flight == 6
    assert publisher._through == 4


def test_single_acks_out_of_order_count_once_the_gap_before_them_is_confirmed() -> None:
    publisher = sent(5)

    publisher._on_ack(3, multiple=False)
    publisher._on_ack(2, multiple=False)

    assert publisher.in_flight == 3
    assert publisher._through == 0

    publisher._on_ack(1, multiple=False)

    assert publisher.in_flight == 2
    assert publisher._through == 3


def test_a_multiple_ack_covers_single_acks_before_it_and_joins_those_after() -> None:
    publisher = sent(8)
    publisher._on_ack(2, multiple=False)
    publisher._on_ack(6, multiple=False)
    publisher._on_ack(5, multiple=False)

    publisher._on_ack(4, multiple=True)
    publisher._on_ack(3, multiple=False)  # already covered

    assert publisher._through == 6
    assert publisher.in_flight == 2
    publisher._on_ack(8, multiple=True)
    assert publisher.in_flight == 0
