"""Fixtures of the reader tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    """A real pseudo-terminal: (the device's master descriptor, the port's path)."""
    master, slave = os.openpty()
    port = os.ttyname(slave)
    os.close(slave)
    yield master, port
    os.close(master)
