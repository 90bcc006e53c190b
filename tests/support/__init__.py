"""Test support: one broker fixture, one fake clock, one simulator helper, harnesses."""
