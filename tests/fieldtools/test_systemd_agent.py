"""The real agent under a fake systemd: READY=1 once running, WATCHDOG=1 pings, STOPPING=1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.harness import SimProcess, write_config
from tests.support.mosquitto import Mosquitto


def test_agent_notifies_ready_watchdog_and_stopping(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    sim = SimProcess("r2000", "--pty", "--tags", "2", log_path=tmp_path / "sim.log")
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=tmp_path / "buffer.db")
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="400000")
    with (tmp_path / "agent.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(cfg)],
                                stdout=log, stderr=log, env=env)
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
            if any("READY=1" in m for m in messages) and \
                    sum("WATCHDOG=1" in m for m in messages) >= 2:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sim.stop()
        sock.close()
    assert any("READY=1" in m for m in messages), messages
    assert sum("WATCHDOG=1" in m for m in messages) >= 2, messages
    assert any("STOPPING=1" in m for m in messages), messages
    ready = next(m for m in messages if "READY=1" in m)
    assert "STATUS=readers" in ready
