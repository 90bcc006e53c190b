"""Benchmarks: `make bench` / `python -m bench`. Numbers go to docs/benchmarks.md, not into tests."""
