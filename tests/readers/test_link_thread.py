"""Local serial ports are drained by one thread of the agent's (issue 12, item 3): bytes are
taken from the kernel while the event loop is busy, so a 4 KB tty buffer does not overflow
behind a long pipeline step. Real pseudo-terminals through pyserial."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.readers.link import LinkError, SerialLink, ThreadedSerialLink


async def test_a_local_port_gets_a_reading_thread_a_url_does_not(pty: tuple[int, str]) -> None:
    _, port = pty
    link = await SerialLink.open(port, 115200)
    try:
        assert isinstance(link, ThreadedSerialLink)
    finally:
        await link.aclose()
    deadline = time.monotonic() + 5
    while [t for t in threading.enumerate() if t.name == "serial-ports"]:
        assert time.monotonic() < deadline, "the port thread outlived its last port"
        await asyncio.sleep(0.01)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    try:
        tcp_port = server.sockets[0].getsockname()[1]
        url = await SerialLink.open(f"socket://127.0.0.1:{tcp_port}", 0)
        assert type(url) is SerialLink  # pyserial URLs stay on asyncio streams
        await url.aclose()
    finally:
        server.close()


async def test_the_port_is_drained_while_the_event_loop_is_busy(pty: tuple[int, str]) -> None:
    master, port = pty
    link = await SerialLink.open(port, 115200)
    payload = b"".join(b"LINE%08d" % i + b"X" * 50 + b"\n" for i in range(800))  # 50 KiB
    done = threading.Event()

    def device() -> None:
        # Blocks whenever the slave's 4 KB input queue is full, that is whenever nobody reads.
        for i in range(0, len(payload), 1024):
            os.write(master, payload[i : i + 1024])
        done.set()

    writer = threading.Thread(target=device, daemon=True)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        writer.start()
        deadline = time.monotonic() + 20.0
        while not done.is_set() and time.monotonic() < deadline:
            sum(range(1000))  # the event loop busy in Python: it never polls a port
        assert done.is_set(), "the device could not write: nobody drained the port"
        got = b""
        while len(got) < len(payload):
            got += await asyncio.wait_for(link.read(), 5.0)
        assert got == payload
    finally:
        sys.setswitchinterval(previous)
        await link.aclose()
        writer.join(5.0)


async def test_what_waits_in_ram_is_bounded(pty: tuple[int, str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    master, port = pty
    monkeypatch.setattr(ThreadedSerialLink, "_BACKLOG_MAX_BYTES", 8192)
    link = await SerialLink.open(port, 115200)
    assert isinstance(link, ThreadedSerialLink)
    try:
        for _ in range(4):
            os.write(master, b"Y" * 3000 + b"\n")
            await asyncio.sleep(0.05)  # the loop delivers each chunk; nobody calls read()
        assert link._paused  # the thread stopped taking bytes past the bound
        got = await link.read()
        assert len(got) >= 8192
        assert not link._paused  # reading again
        os.write(master, b"Z\n")
        while not got.endswith(b"Z\n"):
            got += await asyncio.wait_for(link.read(), 5.0)
        assert got == (b"Y" * 3000 + b"\n") * 4 + b"Z\n"  # nothing lost while paused
    finally:
        await link.aclose()


async def test_one_thread_reads_many_ports_and_a_vanished_one_does_not_stop_the_others(
) -> None:
    ptys = [os.openpty() for _ in range(6)]
    links = [await SerialLink.open(os.ttyname(slave), 115200) for _, slave in ptys]
    try:
        assert len([t for t in threading.enumerate() if t.name == "serial-ports"]) == 1
        os.close(ptys[0][0])  # the first device goes away
        for i, (master, _) in enumerate(ptys[1:], 1):
            os.write(master, b"port %d\n" % i)
        for i, link in enumerate(links[1:], 1):
            assert await asyncio.wait_for(link.read(), 5.0) == b"port %d\n" % i
        with pytest.raises(LinkError):
            await asyncio.wait_for(links[0].read(), 5.0)
    finally:
        for link in links:
            await link.aclose()
        for master, _slave in ptys[1:]:
            os.close(master)
        for _, slave in ptys:
            os.close(slave)


async def test_a_port_thread_failing_before_it_added_a_link_fails_that_link_too(
    pty: tuple[int, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The thread's first select fails, before it applied the link's "add": that link was in no
    # selector, so it was not failed and its read waited forever (seen once in the suite, when
    # naming the thread made its start a little slower).
    import selectors

    class Broken(selectors.DefaultSelector):
        def select(self, timeout: float | None = None) -> list[Any]:
            raise ValueError("a bug in the port thread")

    _master, port = pty
    monkeypatch.setattr(selectors, "DefaultSelector", Broken)  # the port thread's selector
    link = await SerialLink.open(port, 115200)
    try:
        with pytest.raises(LinkError, match="port thread failed"):
            await asyncio.wait_for(link.read(), 5.0)
    finally:
        monkeypatch.undo()
        await link.aclose()


async def test_a_failing_port_thread_fails_its_links_and_the_next_link_gets_a_new_one(
    pty: tuple[int, str], caplog: pytest.LogCaptureFixture,
) -> None:
    master, port = pty
    link = await SerialLink.open(port, 115200)
    assert isinstance(link, ThreadedSerialLink)
    reader = link._reader

    def broken(timeout: float | None = None) -> list[object]:
        raise ValueError("a bug in the port thread")

    reader._selector.select = broken  # type: ignore[method-assign,assignment]
    with reader._lock:
        reader._enqueue("resume", link)  # wakes the thread into the broken select
    with pytest.raises(LinkError, match="port thread failed"):
        await asyncio.wait_for(link.read(), 5.0)
    assert "serial port thread failed" in caplog.text
    await link.aclose()
    again = await SerialLink.open(port, 115200)
    try:
        os.write(master, b"after\n")
        assert await asyncio.wait_for(again.read(), 5.0) == b"after\n"
    finally:
        await again.aclose()


async def test_a_wake_up_byte_without_a_command_is_taken_and_the_thread_sleeps(
    pty: tuple[int, str],
) -> None:
    # The race: _enqueue appends its command and writes its byte after the thread's _apply
    # emptied the pipe but before it took the command. The command is taken, the byte stays.
    # Left in the level-triggered pipe, it made select return at once forever: 100 % of a
    # core on an idle gateway (found by bench_footprint, 2026-12-07).
    master, port = pty
    link = await SerialLink.open(port, 115200)
    assert isinstance(link, ThreadedSerialLink)
    reader = link._reader
    try:
        deadline = time.monotonic() + 5.0
        while reader._commands or _pipe_bytes(reader._wake_r):  # the link's "add" applied
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        os.write(reader._wake_w, b"x")  # a byte whose command was already applied
        while _pipe_bytes(reader._wake_r):
            assert time.monotonic() < deadline, "the wake-up byte stays in the pipe"
            await asyncio.sleep(0.01)
        tid = reader._thread.native_id
        assert tid is not None
        before = _thread_cpu_s(tid)
        await asyncio.sleep(0.5)
        assert _thread_cpu_s(tid) - before < 0.1, "the port thread spins"
        os.write(master, b"still read\n")
        assert await asyncio.wait_for(link.read(), 5.0) == b"still read\n"
    finally:
        await link.aclose()


def _pipe_bytes(fd: int) -> int:
    import fcntl
    import struct
    import termios
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])


def _thread_cpu_s(tid: int) -> float:
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
