"""A projection of the example bank: one document per account."""

from __future__ import annotations

from decimal import Decimal
from functools import singledispatchmethod
from typing import Any

from ordersys.projections import Projection
from ordersys.readmodels import Documents
from tests.unit.accounts import Account


class Balances(Projection):
    name = "balances"

    @singledispatchmethod
    def apply(self, domain_event: Any, docs: Documents) -> None:
        """Events of no interest change nothing."""

    @apply.register
    def _(self, domain_event: Account.Opened, docs: Documents) -> None:
        docs.put(
            "accounts",
            str(domain_event.originator_id),
            {"owner": domain_event.owner, "balance": "0", "open": True},
        )

    @apply.register
    def _(self, domain_event: Account.Deposited, docs: Documents) -> None:
        self._add(docs, str(domain_event.originator_id), domain_event.amount)

    @apply.register
    def _(self, domain_event: Account.Withdrawn, docs: Documents) -> None:
        self._add(docs, str(domain_event.originator_id), -domain_event.amount)

    @apply.register
    def _(self, domain_event: Account.Closed, docs: Documents) -> None:
        account = docs.get("accounts", str(domain_event.originator_id))
        assert account is not None
        docs.put(
            "accounts", str(domain_event.originator_id), {**account, "open": False}
        )

    @staticmethod
    def _add(docs: Documents, key: str, amount: Decimal) -> None:
        account = docs.get("accounts", key)
        assert account is not None
        balance = Decimal(account["balance"]) + amount
        docs.put("accounts", key, {**account, "balance": str(balance)})
