"""ThreadedSerialLink.read_within: a wait with a deadline without a timeout scope (issue 12),
on a real pseudo-terminal read through the port pump."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest

from agent.readers.link import PortPump, SerialLink, ThreadedSerialLink


@pytest.fixture(autouse=True)
def fresh_pump() -> Iterator[None]:
    PortPump.stop()
    yield
    PortPump.stop()


async def _open(port: str) -> ThreadedSerialLink:
    link = await SerialLink.open(port, 115200)
    assert isinstance(link, ThreadedSerialLink)
    return link


async def test_nothing_by_the_deadline_is_none_and_bytes_come_after(
        pty: tuple[int, str]) -> None:
    master, port = pty
    link = await _open(port)
    try:
        t0 = time.monotonic()
        assert await link.read_within(0.1) is None
        assert 0.09 <= time.monotonic() - t0 < 2.0
        os.write(master, b"late\n")
        async with asyncio.timeout(5):
            assert await link.read_within(3.0) == b"late\n"
    finally:
        await link.aclose()


async def test_a_delivery_ends_the_wait_and_a_busy_line_keeps_one_timer(
        pty: tuple[int, str]) -> None:
    master, port = pty
    link = await _open(port)
    try:
        got = b""
        first_timer = None
        for i in range(20):
            async def device(i: int = i) -> None:
                await asyncio.sleep(0.005)
                os.write(master, b"%02d\n" % i)
            task = asyncio.create_task(device(), name="device")
            data = await link.read_within(10.0)
            await task
            assert data is not None
            got += data
            first_timer = first_timer or link._timer
        assert got == b"".join(b"%02d\n" % i for i in range(20))
        # every wait ended with a delivery: the one timer the first wait set is still the one
        assert first_timer is not None
        assert link._timer is first_timer
        assert not first_timer.cancelled()
        # a shorter deadline than the timer's replaces it, and that one ends the wait
        t0 = time.monotonic()
        assert await link.read_within(0.05) is None
        assert time.monotonic() - t0 < 1.0
        assert first_timer.cancelled()
        assert link._timer is None
    finally:
        await link.aclose()
    assert link._timer is None


async def test_a_wait_without_a_deadline_ends_when_the_link_closes(
        pty: tuple[int, str]) -> None:
    _master, port = pty
    link = await _open(port)
    waiting = asyncio.create_task(link.read_within(None), name="reader")
    await asyncio.sleep(0.05)
    await link.aclose()
    async with asyncio.timeout(5):
        assert await waiting == b""


async def test_a_cancelled_wait_leaves_the_link_usable(pty: tuple[int, str]) -> None:
    master, port = pty
    link = await _open(port)
    try:
        waiting = asyncio.create_task(link.read_within(5.0), name="reader")
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert link._waiter is None
        os.write(master, b"after\n")
        async with asyncio.timeout(5):
            assert await link.read_within(3.0) == b"after\n"
    finally:
        await link.aclose()
