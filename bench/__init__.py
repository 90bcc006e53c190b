"""Benchmarks: `make bench` runs them; the numbers go to docs/benchmarks.md, not into tests."""
