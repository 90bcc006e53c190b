"""sd_notify client against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import array
import asyncio
import logging
import os
import socket
import struct
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import systemd

WATCHDOG_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The suite itself may run under systemd (a CI unit): start from "not under systemd".
    for name in WATCHDOG_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def path_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """systemd's side: a datagram socket bound to a path, announced in NOTIFY_SOCKET."""
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="sdn") as d:
        path = str(Path(d) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(5)
            monkeypatch.setenv("NOTIFY_SOCKET", path)
            yield sock


@pytest.fixture
def abstract_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """The same in the abstract namespace, as systemd announces it: ``@name``."""
    name = f"trace-edge-agent-test/{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", f"@{name}")
        yield sock


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_outside_systemd_every_call_is_a_noop() -> None:
    assert systemd.notify("READY=1") is False
    assert systemd.ready("up") is False
    assert systemd.status("x") is False
    assert systemd.stopping() is False
    assert systemd.watchdog() is False
    assert systemd.extend_timeout(10) is False
    assert systemd.watchdog_interval_s() is None


def test_path_socket_receives_each_message(path_socket: socket.socket) -> None:
    assert systemd.ready("2 readers, broker connected") is True
    assert received(path_socket) == "READY=1\nSTATUS=2 readers, broker connected"
    assert systemd.status("reader r1: reconnecting") is True
    assert received(path_socket) == "STATUS=reader r1: reconnecting"
    assert systemd.watchdog() is True
    assert received(path_socket) == "WATCHDOG=1"
    assert systemd.extend_timeout(2.5) is True
    assert received(path_socket) == "EXTEND_TIMEOUT_USEC=2500000"
    assert systemd.stopping("draining the buffer") is True
    assert received(path_socket) == "STOPPING=1\nSTATUS=draining the buffer"
    assert systemd.ready() is True
    assert received(path_socket) == "READY=1"
    assert systemd.reloading("config applied") is True
    lines = received(path_socket).split("\n")
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=")
    assert int(lines[1].split("=")[1]) > 0
    assert lines[2] == "STATUS=config applied"


def test_abstract_socket_receives_messages(abstract_socket: socket.socket) -> None:
    assert systemd.ready("up") is True
    assert received(abstract_socket) == "READY=1\nSTATUS=up"
    assert systemd.stopping() is True
    assert received(abstract_socket) == "STOPPING=1"


def test_messages_carry_this_process_credentials(path_socket: socket.socket) -> None:
    # NotifyAccess=main: systemd accepts a message only when the kernel-attached sender PID is
    # the main process, so the message must come from us, not from a helper process.
    path_socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    assert systemd.watchdog() is True
    creds = struct.calcsize("3i")
    data, ancdata, _flags, _addr = path_socket.recvmsg(4096, socket.CMSG_SPACE(creds))
    assert data == b"WATCHDOG=1"
    [(level, kind, payload)] = ancdata
    assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
    pid, uid, gid = array.array("i", payload[:creds])
    assert (pid, uid, gid) == (os.getpid(), os.getuid(), os.getgid())


def test_status_text_stays_one_assignment(path_socket: socket.socket) -> None:
    assert systemd.status("line one\nREADY=1\r\nline three") is True
    assert received(path_socket) == "STATUS=line one READY=1 line three"


def test_empty_state_is_a_bug(path_socket: socket.socket) -> None:
    with pytest.raises(ValueError, match="empty"):
        systemd.notify("")


@pytest.mark.parametrize("value", ["vsock:2:1234", "relative/path", "@"])
def test_unsupported_addresses_are_a_noop(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert systemd.notify("READY=1") is False


def test_vanished_socket_returns_false_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    with caplog.at_level(logging.WARNING, logger="agent.systemd"):
        assert systemd.watchdog() is False
    assert "sd_notify WATCHDOG=1 to" in caplog.text
    assert "gone" in caplog.text


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("30000000", "self", 30.0),
        ("500000", "self", 0.5),
        ("30000000", "other", None),
        ("30000000", "garbage", None),
        ("0", None, None),
        ("-5", None, None),
        ("thirty", None, None),
        ("", None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str, pid: str | None, expected: float | None
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        pids = {"self": str(os.getpid()), "other": str(os.getpid() + 1), "garbage": "x"}
        monkeypatch.setenv("WATCHDOG_PID", pids[pid])
    assert systemd.watchdog_interval_s() == expected


async def test_watchdog_loop_returns_at_once_without_a_watchdog() -> None:
    calls: list[bool] = []

    def healthy() -> bool:
        calls.append(True)
        return True

    async with asyncio.timeout(1):
        await systemd.watchdog_loop(healthy)
    assert calls == []


async def next_datagram(sock: socket.socket, timeout_s: float) -> str | None:
    try:
        async with asyncio.timeout(timeout_s):
            data = await asyncio.get_running_loop().sock_recv(sock, 4096)
    except TimeoutError:
        return None
    return data.decode()


def drain(sock: socket.socket) -> list[str]:
    out: list[str] = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


async def test_watchdog_pings_only_while_healthy(
    monkeypatch: pytest.MonkeyPatch,
    path_socket: socket.socket,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path_socket.setblocking(False)
    interval_s = 0.2  # pings every 0.1 s
    monkeypatch.setenv("WATCHDOG_USEC", str(int(interval_s * 1_000_000)))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    healthy = True
    caplog.set_level(logging.WARNING, logger="agent.systemd")

    task = asyncio.create_task(systemd.watchdog_loop(lambda: healthy), name="watchdog")
    try:
        for _ in range(3):
            assert await next_datagram(path_socket, 2.0) == "WATCHDOG=1"

        # Unhealthy: the pings sent so far are all there is, whatever the wait.
        healthy = False
        assert set(drain(path_socket)) <= {"WATCHDOG=1"}
        assert await next_datagram(path_socket, 3 * interval_s) is None
        assert "watchdog pings withheld" in caplog.text

        # Recovered before systemd gave up: pings resume.
        healthy = True
        assert await next_datagram(path_socket, 2.0) == "WATCHDOG=1"
        assert "watchdog pings resumed" in caplog.text
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
