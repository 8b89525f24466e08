"""Adapters that store events and read models."""
