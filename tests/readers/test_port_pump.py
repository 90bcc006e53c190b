"""The port pump (agent/readers/pump.py): a child process empties the local serial ports into
pipes, so a port is drained even while the agent's process holds its GIL (issue 12, item 3).
Real pseudo-terminals through pyserial, a real child process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from agent.readers.link import Link, LinkError, PortPump, SerialLink, ThreadedSerialLink

# A device on the master side, in a process of its own: 3,000 bytes now, again 0.3 s later and
# again 0.3 s after that; what does not fit the slave's 4 KB input queue (FIONREAD on the slave,
# as bench/bench_e2e.py asks) is refused, as a UART loses it. Prints the bytes accepted and the
# bytes refused.
DEVICE = textwrap.dedent("""
    import array, fcntl, os, sys, termios, time
    master, slave = int(sys.argv[1]), os.open(sys.argv[2], os.O_RDWR | os.O_NOCTTY)
    sent = refused = 0
    for burst in range(3):
        queued = array.array("i", [0])
        fcntl.ioctl(slave, termios.FIONREAD, queued)
        room = max(0, 4095 - queued[0])
        data = bytes([65 + burst]) * 3000
        os.write(master, data[:room])
        sent += min(room, 3000)
        refused += 3000 - min(room, 3000)
        time.sleep(0.3)
    print(sent, refused)
""")


@pytest.fixture(autouse=True)
def fresh_pump() -> Iterator[None]:
    PortPump.stop()
    yield
    PortPump.stop()


def _hold_the_gil_s(seconds: float) -> None:
    """Keep this process's GIL for about ``seconds``: sum() over a range runs in C and never
    lets another thread in (no port thread, no event loop)."""
    t0 = time.perf_counter()
    sum(range(1_000_000))
    per_million_s = max(time.perf_counter() - t0, 1e-4)
    sum(range(int(seconds / per_million_s * 1_000_000)))  # one call: no switch inside


async def _device_while_the_gil_is_held(master: int, link: ThreadedSerialLink) -> bytes:
    device = subprocess.Popen(  # noqa: ASYNC220 - the loop is to be blocked here anyway
        [sys.executable, "-c", DEVICE, str(master), link.port], pass_fds=(master,),
        stdout=subprocess.PIPE, text=True)
    _hold_the_gil_s(1.2)  # all three bursts are written meanwhile
    out, _ = device.communicate(timeout=10)
    sent, refused = (int(x) for x in out.split())
    got = b""
    async with asyncio.timeout(10):
        while len(got) < sent:
            got += await link.read()
    assert refused == 0 or len(got) == sent
    return got if refused == 0 else b"refused"


async def test_the_pump_drains_the_port_while_the_agent_holds_its_gil(
        pty: tuple[int, str]) -> None:
    master, port = pty
    link = await SerialLink.open(port, 115200)
    assert isinstance(link, ThreadedSerialLink)
    try:
        assert link.pump_id is not None
        assert link.read_fd != link.fd
        got = await _device_while_the_gil_is_held(master, link)
        assert got == b"A" * 3000 + b"B" * 3000 + b"C" * 3000  # nothing refused, in order
    finally:
        await link.aclose()


async def test_without_the_pump_the_same_device_is_refused(
        pty: tuple[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above can fail: the port thread alone, GIL held, lets the tty queue fill."""
    monkeypatch.setattr(ThreadedSerialLink, "pump", False)
    master, port = pty
    link = await SerialLink.open(port, 115200)
    assert isinstance(link, ThreadedSerialLink)
    try:
        assert link.pump_id is None
        assert link.read_fd == link.fd
        assert await _device_while_the_gil_is_held(master, link) == b"refused"
    finally:
        await link.aclose()


async def _echo(master: int, link: Link, data: bytes) -> bytes:
    """``data`` written by the device, as many bytes read back from the link."""
    os.write(master, data)
    got = b""
    async with asyncio.timeout(5):
        while len(got) < len(data):
            got += await link.read()
    return got


async def _read_until_it_fails(link: Link) -> None:
    while True:
        await link.read()


def _pump_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_a_closed_link_is_let_go_by_the_pump_and_the_next_link_gets_every_byte(
        pty: tuple[int, str]) -> None:
    master, port = pty
    first = await SerialLink.open(port, 115200)
    pump = PortPump._current
    assert pump is not None
    holding = _pump_fds(pump.proc.pid)
    os.write(master, b"one\n")
    async with asyncio.timeout(5):
        assert await first.read() == b"one\n"
    await first.aclose()
    assert _pump_fds(pump.proc.pid) == holding - 2  # the port and its pipe are closed there
    second = await SerialLink.open(port, 115200)
    try:
        assert PortPump._current is pump  # one pump for every port
        assert await _echo(master, second, b"two\n") == b"two\n"
    finally:
        await second.aclose()


async def test_a_dead_pump_fails_its_links_and_the_next_link_starts_a_new_one(
        pty: tuple[int, str], caplog: pytest.LogCaptureFixture) -> None:
    master, port = pty
    link = await SerialLink.open(port, 115200)
    pump = PortPump._current
    assert pump is not None
    os.kill(pump.proc.pid, signal.SIGKILL)
    with pytest.raises(LinkError, match="no data"):
        await asyncio.wait_for(_read_until_it_fails(link), 5)
    await link.aclose()
    again = await SerialLink.open(port, 115200)
    try:
        assert PortPump._current is not None
        assert PortPump._current is not pump
        assert await _echo(master, again, b"after\n") == b"after\n"
    finally:
        await again.aclose()


async def test_without_a_pump_the_port_thread_reads_the_port_itself(
        pty: tuple[int, str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    master, port = pty
    with caplog.at_level(logging.WARNING):
        link = await SerialLink.open(port, 115200)
    try:
        assert "serial port pump cannot start" in caplog.text
        assert isinstance(link, ThreadedSerialLink)
        assert link.pump_id is None
        os.write(master, b"direct\n")
        async with asyncio.timeout(5):
            assert await link.read() == b"direct\n"
    finally:
        await link.aclose()


async def test_writes_go_to_the_port(pty: tuple[int, str]) -> None:
    master, port = pty
    link = await SerialLink.open(port, 115200)
    try:
        await link.write(b"\xa0\x04\x01\x89\x01\xd1")
        got = b""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(5):
            while len(got) < 6:
                got += await loop.run_in_executor(None, os.read, master, 64)
        assert got == b"\xa0\x04\x01\x89\x01\xd1"
    finally:
        await link.aclose()


async def test_the_pump_asks_for_the_cpu_first(pty: tuple[int, str]) -> None:
    _, port = pty
    link = await SerialLink.open(port, 115200)
    try:
        pump = PortPump._current
        assert pump is not None
        if os.sched_getscheduler(pump.proc.pid) != os.SCHED_FIFO:  # not allowed real time
            nice = os.getpriority(os.PRIO_PROCESS, pump.proc.pid)
            if os.geteuid() == 0:
                pytest.fail("as root the pump runs at real-time priority")
            assert nice <= os.getpriority(os.PRIO_PROCESS, 0)  # -10 where LimitNICE allows
    finally:
        await link.aclose()
