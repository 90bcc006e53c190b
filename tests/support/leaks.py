"""The leaked-task check: an async test must not leave tasks running when it ends."""

from __future__ import annotations

import asyncio


async def leaked_tasks(grace_s: float = 1.0) -> list[str]:
    """Wait up to ``grace_s`` for the loop's other tasks to finish; cancel and name the rest.

    A task still running after that is a fire-and-forget the code under test forgot (or a
    task a fixture did not stop): the caller fails the test with the names returned.
    """
    me = asyncio.current_task()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while True:
        leaked = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not leaked or loop.time() >= deadline:
            break
        await asyncio.sleep(0.01)
    names = [f"{t.get_name()} ({t.get_coro()!r})" for t in leaked]
    for task in leaked:
        task.cancel()
    await asyncio.gather(*leaked, return_exceptions=True)
    return names
