"""Every shop aggregate survives being stored and replayed (its event payloads
are what the JSON transcoder stores)."""

from __future__ import annotations

from uuid import uuid4

from ordersys import Application, load_settings
from ordersys.shop.catalog.domain import Inventory, Product
from ordersys.shop.orders.domain import Order, Status, line
from ordersys.shop.payments.domain import Payment, PaymentStatus
from ordersys.shop.users.domain import User


class Shop(Application):
    aggregate_types = (User, Product, Inventory, Order, Payment)


def test_each_aggregate_is_rebuilt_from_its_stored_events() -> None:
    shop = Shop(load_settings({"persistence": "memory"}))
    user = User.register("ann@example.com", "Ann", "hash")
    user.update_profile("Ann Lee")
    product = Product.create("BOOK-1", "A book", 1299)
    product.change_price(999)
    inventory = Inventory(product_id=product.id)
    inventory.add_stock(5)
    order = Order.place(user.id, [line(product.id, 2, 999)])
    inventory.reserve(order.id, 2)
    order.add_item(uuid4(), 1, 100)
    order.submit()
    order.confirm()
    inventory.commit(order.id)
    payment = Payment.request(order.id, order.total_cents)
    payment.capture("ref-1")
    shop.save(user, product, inventory, order, payment)

    assert shop.get(User, user.id).name == "Ann Lee"
    assert shop.get(Product, product.id).price_cents == 999
    stock = shop.get(Inventory, inventory.id)
    assert (stock.on_hand, stock.available) == (3, 3)
    stored = shop.get(Order, order.id)
    assert (stored.status, stored.total_cents) == (Status.CONFIRMED, 2098)
    assert shop.get(Payment, payment.id).status == PaymentStatus.CAPTURED


def test_orders_and_payments_survive_snapshots() -> None:
    shop = Shop(
        load_settings(
            {"persistence": "memory", "snapshot_intervals": {"Order": 2, "Payment": 2}}
        )
    )
    order = Order.place(uuid4(), [line(uuid4(), 1, 500)])
    order.submit()
    order.confirm()
    order.ship()
    payment = Payment.request(order.id, 500)
    payment.capture("ref-1")
    shop.save(order, payment)

    stored, paid = shop.get(Order, order.id), shop.get(Payment, payment.id)
    stored.deliver()
    paid.refund("returned")

    assert stored.status == Status.DELIVERED
    assert paid.status == PaymentStatus.REFUNDED
