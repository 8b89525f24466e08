"""Invariant: replaying stored events rebuilds the state the commands produced,
with and without snapshots, for any sequence of commands."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ordersys import BusinessRuleViolation, load_settings
from tests.unit.accounts import Account, Bank

amounts = st.decimals(min_value=Decimal("-50"), max_value=Decimal("50"), places=2)
commands = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), amounts),
        st.tuples(st.just("withdraw"), amounts),
        st.tuples(st.just("close"), st.just(Decimal(0))),
    ),
    max_size=30,
)


def state(account: Account) -> tuple[object, ...]:
    return (account.owner, account.balance, account.closed, account.version)


@settings(max_examples=60, deadline=None)
@given(commands=commands, snapshot_every=st.sampled_from([0, 1, 3]))
def test_replay_rebuilds_the_same_state(
    commands: list[tuple[str, Decimal]], snapshot_every: int
) -> None:
    bank = Bank(
        load_settings(
            {"persistence": "memory", "snapshot_intervals": {"Account": snapshot_every}}
        )
    )
    account = Account("ann", Decimal(20))
    bank.write(account)
    for name, amount in commands:
        try:
            if name == "close":
                account.close()
            else:
                getattr(account, name)(amount)
        except BusinessRuleViolation:
            continue
        bank.write(account)

    replayed = bank.get(Account, account.id)

    assert state(replayed) == state(account)
    assert replayed.balance >= -replayed.overdraft_limit
