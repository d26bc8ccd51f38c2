"""Serving tests: run in the serving environment with ``pytest -m serving tests/serving``."""
