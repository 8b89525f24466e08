"""The reader's rule for gaps in notification ids, on simulated histories
(pure logic, no server): appenders take blocks of ids in transaction id
order; each then commits, rolls back, or is still running in the reader's
snapshot."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ordersys.persistence.recorders import settled_length

OUTCOMES = st.sampled_from(["committed", "rolled back", "running"])


@st.composite
def histories(
    draw: st.DrawFn,
) -> tuple[list[tuple[int, ...]], set[int], dict[int, int]]:
    """Visible rows (id, ..., transaction id at index 5), the running
    transaction ids, and the transaction id of every id taken."""
    rows: list[tuple[int, ...]] = []
    running: set[int] = set()
    owner: dict[int, int] = {}
    next_id, xid = 1, 100
    for _ in range(draw(st.integers(0, 12))):
        xid += draw(st.integers(1, 3))  # other transactions take ids too
        size = draw(st.integers(1, 3))
        outcome = draw(OUTCOMES)
        for notification_id in range(next_id, next_id + size):
            owner[notification_id] = xid
            if outcome == "committed":
                rows.append((notification_id, 0, 0, "", b"", xid))
        if outcome == "running":
            running.add(xid)
        next_id += size
    # Transactions that take no ids (other tables, other databases) run too.
    foreign = draw(st.lists(st.integers(100, xid + 5), max_size=3))
    running |= set(foreign) - set(owner.values())
    return rows, running, owner


@given(histories())
def test_a_reader_never_passes_an_id_a_running_transaction_holds(
    history: tuple[list[tuple[int, ...]], set[int], dict[int, int]],
) -> None:
    rows, running, owner = history

    taken = rows[: settled_length(rows, 0, 0, sorted(running))]

    held = [i for i, xid in owner.items() if xid in running]
    if taken and held:
        assert taken[-1][0] < min(held)


@given(histories())
def test_a_reader_stops_only_at_a_gap_and_takes_everything_once_all_is_done(
    history: tuple[list[tuple[int, ...]], set[int], dict[int, int]],
) -> None:
    rows, running, _ = history

    settled = settled_length(rows, 0, 0, sorted(running))

    if settled < len(rows):
        previous_id = rows[settled - 1][0] if settled else 0
        assert rows[settled][0] != previous_id + 1
    assert settled_length(rows, 0, 0, []) == len(rows)
