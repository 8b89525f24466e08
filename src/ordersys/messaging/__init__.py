"""Integration events over RabbitMQ: the event store is the outbox.

* :class:`~ordersys.messaging.relay.Relay` follows an application's events and
  publishes its integration events with publisher confirms, recording how far
  it got only after the broker confirmed;
* :class:`~ordersys.messaging.consumer.EventConsumer` applies them in another
  service, recording each message's identity in the same transaction as its
  effect, so a redelivered message changes nothing.
"""
