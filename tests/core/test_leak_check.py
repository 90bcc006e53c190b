"""The suite's leaked-task check (tests/conftest.py) catches a forgotten task."""

from __future__ import annotations

import asyncio

from tests.support.leaks import leaked_tasks


async def test_a_forgotten_task_is_named_and_cancelled() -> None:
    task = asyncio.get_running_loop().create_task(asyncio.sleep(30), name="forgotten")
    names = await leaked_tasks(grace_s=0.05)
    assert len(names) == 1
    assert names[0].startswith("forgotten")
    assert task.cancelled()


async def test_a_task_that_ends_within_the_grace_is_not_a_leak() -> None:
    asyncio.get_running_loop().create_task(asyncio.sleep(0.02), name="finishing")
    assert await leaked_tasks(grace_s=1.0) == []
