"""The bundled order-management system, composed from the ordersys framework.

One subpackage per service; each holds its domain model (``domain.py``: plain
aggregates with their rules), and later its handlers, projections, contracts
and composition.
"""
