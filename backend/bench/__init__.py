"""Benchmarks run as `python -m backend.bench.<name>`; they print figures a person can compare."""
