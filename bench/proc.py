"""The agent's processes, for the benchmarks that sample its CPU and RSS from /proc."""

from __future__ import annotations

import contextlib
from pathlib import Path


def family(pid: int) -> list[int]:
    """The agent and its child processes (the serial port pump): their CPU and RSS count
    together. Any of the agent's threads may have started a child, so every thread's list is
    read."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(c) for c in (task / "children").read_text().split()]
    return [pid, *children]
