"""Logs (and, later, metrics and traces) for ordersys processes."""
