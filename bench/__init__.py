"""Benchmarks: ``python -m bench <name>`` runs ``bench/<name>.py``'s ``main()``.

Each benchmark prints its figures beside a baseline measured in the same run.
"""
