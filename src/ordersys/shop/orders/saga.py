"""The order saga: a submitted order gets its stock and its payment, or is
cancelled with the reason, and nothing is left behind either way.

::

    OrderSubmitted -> reserve stock --ok--> capture payment --ok--> confirm order
                            |                      |                 commit stock
                        refused/late          declined/late
                            v                      v
                     cancel order           release stock, refund (if a late
                                            capture comes), cancel order

Each step has a deadline: a reply that never comes compensates as a refusal
would. A reply that comes after the saga gave up is compensated too (a late
reservation is released, a late capture refunded).
"""

from __future__ import annotations

from datetime import timedelta
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from eventsourcing.application import ProcessingEvent

from ordersys import Command, event
from ordersys.errors import OrdersysError, RequestTimeout
from ordersys.processes import ProcessManager, Saga
from ordersys.settings import Settings
from ordersys.shop.catalog.commands import (
    CommitInventory,
    ReleaseInventory,
    ReserveInventory,
    StockLine,
)
from ordersys.shop.orders.commands import UpdateOrderStatus
from ordersys.shop.orders.domain import Order
from ordersys.shop.payments.commands import CapturePayment, RefundPayment

MAX_RETRIES = 5


class OrderSaga(Saga):
    """One submitted order on its way to CONFIRMED or CANCELLED."""

    @event("Begun")
    def begin(
        self,
        order_id: UUID,
        lines: list[dict[str, Any]],
        total_cents: int,
        step_seconds: float,
    ) -> None:
        self.order_id = order_id
        self.lines = lines
        self.total_cents = total_cents
        self.step_seconds = step_seconds
        self.step = "reserving"
        self.retries: dict[str, int] = {}

    def start(self) -> None:
        self.issue(
            ReserveInventory(
                order_id=self.order_id,
                lines=[
                    StockLine(product_id=UUID(x["product_id"]), quantity=x["quantity"])
                    for x in self.lines
                ],
            )
        )
        self._set_step_deadline("reserving")

    @property
    def product_ids(self) -> list[UUID]:
        return [UUID(x["product_id"]) for x in self.lines]

    def _set_step_deadline(self, step: str) -> None:
        # From the time the saga's step records, as its history shows it.
        self.set_deadline(step, self.now + timedelta(seconds=self.step_seconds))

    @event("StepReached")
    def _step(self, step: str) -> None:
        self.step = step

    def on_reply(
        self,
        message_type: str,
        result: Any,  # noqa: ARG002 (the steps need only success or failure)
        error: OrdersysError | None,
    ) -> None:
        if message_type == ReserveInventory.message_type:
            self._reserved(error)
        elif message_type == CapturePayment.message_type:
            self._paid(error)
        elif error is not None:
            self._retry(message_type, error)

    def _reserved(self, error: OrdersysError | None) -> None:
        if self.is_finished:
            if error is None:  # it came after the saga gave up
                self.issue(
                    ReleaseInventory(
                        order_id=self.order_id, product_ids=self.product_ids
                    )
                )
            return
        self.cancel_deadline("reserving")
        if error is not None:
            # A refusal reserved nothing; a timeout may have reserved all.
            timed_out = isinstance(error, RequestTimeout)
            self._cancel(f"stock not reserved: {error.message}", release=timed_out)
            return
        self._step("paying")
        self.issue(
            CapturePayment(order_id=self.order_id, amount_cents=self.total_cents)
        )
        self._set_step_deadline("paying")

    def _paid(self, error: OrdersysError | None) -> None:
        if self.is_finished:
            if error is None:  # a capture after the saga gave up is given back
                self.issue(
                    RefundPayment(order_id=self.order_id, reason="order cancelled")
                )
            return
        self.cancel_deadline("paying")
        if error is not None:
            if isinstance(error, RequestTimeout):  # the charge may have gone through
                self.issue(
                    RefundPayment(order_id=self.order_id, reason="payment timed out")
                )
            self._cancel(error.message, release=True)
            return
        self._step("confirming")
        self.issue(UpdateOrderStatus(order_id=self.order_id, status="CONFIRMED"))
        self.issue(
            CommitInventory(order_id=self.order_id, product_ids=self.product_ids)
        )
        self.complete()

    def on_deadline(self, name: str) -> None:
        if name == "reserving":
            self._cancel("the catalog did not answer in time", release=True)
        elif name == "paying":
            self.issue(
                RefundPayment(order_id=self.order_id, reason="payment timed out")
            )
            self._cancel("the payment did not answer in time", release=True)

    def _cancel(self, reason: str, *, release: bool) -> None:
        if release:
            self.issue(
                ReleaseInventory(order_id=self.order_id, product_ids=self.product_ids)
            )
        self.issue(
            UpdateOrderStatus(order_id=self.order_id, status="CANCELLED", reason=reason)
        )
        self.fail(reason)

    def _retry(self, message_type: str, error: OrdersysError) -> None:
        """A compensation or confirmation that failed is sent again, a few times."""
        attempts = self.retries.get(message_type, 0)
        if attempts >= MAX_RETRIES:
            return
        command = self._last_command(message_type)
        if command is not None:
            self._retried(message_type, error.message)
            self.issue(command)

    @event("Retried")
    def _retried(self, message_type: str, error: str) -> None:  # noqa: ARG002
        self.retries[message_type] = self.retries.get(message_type, 0) + 1

    def _last_command(self, message_type: str) -> Command | None:
        commands: dict[str, Command] = {
            ReleaseInventory.message_type: ReleaseInventory(
                order_id=self.order_id, product_ids=self.product_ids
            ),
            CommitInventory.message_type: CommitInventory(
                order_id=self.order_id, product_ids=self.product_ids
            ),
            RefundPayment.message_type: RefundPayment(
                order_id=self.order_id, reason="order cancelled"
            ),
            UpdateOrderStatus.message_type: UpdateOrderStatus(
                order_id=self.order_id,
                status="CONFIRMED" if self.status == "completed" else "CANCELLED",
                reason=self.reason or "cancelled",
            ),
        }
        return commands.get(message_type)


class OrderProcess(ProcessManager):
    """Starts an order saga for each submitted order."""

    def __init__(
        self, settings: Settings | None = None, step_seconds: float = 30.0
    ) -> None:
        super().__init__(settings)
        self.step_seconds = step_seconds

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[Any]) -> None:
        """Other order events start nothing."""

    @policy.register
    def _(
        self, domain_event: Order.OrderSubmitted, processing_event: ProcessingEvent[Any]
    ) -> None:
        saga = self.start_saga(OrderSaga, domain_event.originator_id)
        saga.begin(
            domain_event.originator_id,
            domain_event.lines,
            domain_event.total_cents,
            self.step_seconds,
        )
        saga.start()
        processing_event.collect_events(saga)
