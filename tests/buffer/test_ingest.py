"""Ingest at shutdown on a real SqliteBuffer: what the readers handed over is committed, or,
when the buffer cannot take it before the deadline, counted and logged with the reason."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from agent.buffer.api import OutEvent
from agent.buffer.ingest import Ingest
from agent.buffer.sqlite import SqliteBuffer
from tests.support.buffer_helpers import make_cfg, tag

MAX = 256 * 1024


async def full_buffer(tmp_path: Path) -> SqliteBuffer:
    """A backpressure buffer filled to max_size by undelivered events: put_reads is refused."""
    buf = await SqliteBuffer.open(make_cfg(tmp_path, max_size=MAX, when_full="backpressure"))
    big = "x" * 8000
    while (await buf.stats()).used_bytes < MAX:
        await buf.commit_events([], [OutEvent(kind="event", payload=f'"{big}"',
                                              created_at_s=time.time())] * 4)
    return buf


async def start(buf: SqliteBuffer, n: int) -> tuple[Ingest, asyncio.Task[None]]:
    ingest = Ingest(buf)
    ingest.retry_s = 0.02
    task = asyncio.create_task(ingest.run(), name="ingest")
    for i in range(n):
        await ingest.put(tag(i))
    deadline = time.monotonic() + 5
    while ingest.queued:  # the batch was taken and is being retried (buffer full)
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    return ingest, task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_the_batch_being_retried_at_shutdown_is_committed_by_drain(tmp_path: Path) -> None:
    buf = await full_buffer(tmp_path)
    ingest, task = await start(buf, 5)
    await stop(task)  # SIGTERM: the TaskGroup cancels ingest while it waits for room
    rows = await buf.claim(10_000, lease_s=60)  # meanwhile the uplink delivers the backlog
    await buf.ack([r.id for r in rows])
    await asyncio.wait_for(ingest.drain(), 10)
    assert (await buf.stats()).reads_pending == 5  # the batch in hand was not forgotten
    assert ingest.accepted_total == 5
    assert ingest.lost_at_shutdown == 0
    await buf.aclose()


async def test_drain_gives_up_at_its_deadline_and_says_how_many_reads_were_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    buf = await full_buffer(tmp_path)
    ingest, task = await start(buf, 6)
    # A reader's put now waits while the buffer is full: stopping it hands nothing over.
    reader = asyncio.create_task(ingest.put(tag(99)), name="reader-put")
    await asyncio.sleep(0.05)
    await stop(reader)
    await stop(task)
    started = time.monotonic()
    await asyncio.wait_for(ingest.drain(timeout_s=0.5), 10)  # was an endless retry loop
    assert time.monotonic() - started < 5
    assert ingest.lost_at_shutdown == 6
    assert "6 reads" in caplog.text
    assert "not stored" in caplog.text
    assert (await buf.stats()).reads_pending == 0
    await buf.aclose()


async def test_under_backpressure_reads_wait_uncounted_and_readers_pause(tmp_path: Path) -> None:
    """Issue 13 item 6: before, up to 20,000 reads waited in RAM while counted as taken in."""
    buf = await full_buffer(tmp_path)
    ingest, task = await start(buf, 5)
    assert ingest.paused
    assert ingest.waiting == 5
    assert ingest.accepted_total == 0  # handed over, not committed: not accepted
    blocked = asyncio.create_task(ingest.put(tag(99)), name="reader-put")
    await asyncio.sleep(0.1)
    assert not blocked.done()  # the reader waits instead of queueing more in RAM
    assert ingest.waiting == 5
    rows = await buf.claim(10_000, lease_s=60)  # the uplink delivers: room again
    await buf.ack([r.id for r in rows])
    await asyncio.wait_for(blocked, 5)
    deadline = time.monotonic() + 5
    while ingest.accepted_total < 6:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert not ingest.paused
    assert ingest.waiting == 0
    await stop(task)
    await buf.aclose()


async def test_reads_arriving_within_the_window_of_the_oldest_join_its_commit(
        tmp_path: Path) -> None:
    """The group-commit window counts from the oldest waiting read's arrival: reads that come
    meanwhile are committed with it, in one put, about one window after it arrived, and not
    one window after the previous commit ended (issue 12: what a SIGKILL can lose)."""
    async with await SqliteBuffer.open(make_cfg(tmp_path, commit_interval_ms=1000)) as buf:
        ingest = Ingest(buf, window_s=0.3)
        puts: list[tuple[float, int]] = []
        real_put = buf.put_batch

        async def put_batch(first_id: int, count: int, reads: Any, events: Any) -> None:
            puts.append((time.monotonic(), count))
            await real_put(first_id, count, reads, events)

        buf.put_batch = put_batch  # type: ignore[method-assign]
        task = asyncio.create_task(ingest.run(), name="ingest")
        try:
            t0 = time.monotonic()
            await ingest.put(tag(1))
            await asyncio.sleep(0.1)
            await ingest.put(tag(2))
            assert ingest.put_nowait(tag(3))
            while ingest.accepted_total < 3:
                assert time.monotonic() - t0 < 5
                await asyncio.sleep(0.01)
            assert [n for _, n in puts] == [3]  # one commit for the three
            assert 0.25 <= puts[0][0] - t0 < 0.9  # the window of the first, no second wait
            t1 = time.monotonic()
            await ingest.put(tag(4))  # a new oldest read: its own window
            while ingest.accepted_total < 4:
                assert time.monotonic() - t1 < 5
                await asyncio.sleep(0.01)
            assert [n for _, n in puts] == [3, 1]
            assert 0.25 <= puts[1][0] - t1 < 0.9
        finally:
            await stop(task)
        assert [s.read for s in await buf.take_reads(10)] == [tag(1), tag(2), tag(3), tag(4)]


async def test_a_read_taken_into_the_window_when_cancelled_is_committed_by_drain(
        tmp_path: Path) -> None:
    """SIGTERM while the ingest holds a batch open for its window: the read it took is not
    forgotten (drain commits it), and neither are those still queued."""
    async with await SqliteBuffer.open(make_cfg(tmp_path)) as buf:
        ingest = Ingest(buf, window_s=5.0)
        task = asyncio.create_task(ingest.run(), name="ingest")
        await ingest.put(tag(1))
        await asyncio.sleep(0.1)  # taken, and the window of 5 s began
        assert ingest.queued == 0
        assert ingest.waiting == 1
        await ingest.put(tag(2))
        await stop(task)
        await asyncio.wait_for(ingest.drain(), 10)
        assert ingest.accepted_total == 2
        assert [s.read for s in await buf.take_reads(10)] == [tag(1), tag(2)]
