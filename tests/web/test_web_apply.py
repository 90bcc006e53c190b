"""Config apply from the page, the good path, under a fake systemd: the new file is written
(backup kept), the agent restarts in the same process (RELOADING=1 then READY=1, not
STOPPING=1), connects with it and the note says "confirmed"."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.support.harness import SimProcess, agent_cli, wait_until, write_config
from tests.support.mosquitto import Mosquitto, free_port
from tests.web.browser import http


def _answers(url: str) -> bool:
    try:
        return http(url)[0] in (200, 503)
    except OSError:
        return False


def test_a_good_config_is_applied_and_confirmed(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sock_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_path))
    notify.settimeout(0.2)
    sim = SimProcess("r2000", "--pty", "--tags", "2", log_path=tmp_path / "sim.log")
    url = f"127.0.0.1:{free_port()}"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=tmp_path / "buffer.db",
                       extra={"http": {"listen": url, "apply_confirm_s": 15,
                                       "admin_password_file": str(tmp_path / "pw")}})
    assert agent_cli("set-admin-password", "-c", str(cfg), "--stdin",
                     stdin="admin-pass-1\n").returncode == 0
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path))
    with (tmp_path / "agent.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(cfg)],
                                stdout=log, stderr=log, env=env)
    messages: list[str] = []

    def collect(until: float, want: str, count: int = 1) -> None:
        while time.monotonic() < until and sum(want in m for m in messages) < count:
            try:
                messages.append(notify.recv(4096).decode())
            except TimeoutError:
                continue

    try:
        collect(time.monotonic() + 30, "READY=1")
        wait_until(lambda: _answers(f"http://{url}/health"), 30, "the HTTP door")
        code, body, headers = http(f"http://{url}/api/login", {"password": "admin-pass-1"})
        assert code == 200, body
        auth = {"Cookie": headers["Set-Cookie"].split(";", 1)[0],
                "X-CSRF-Token": json.loads(body)["csrf"]}
        code, body, _ = http(f"http://{url}/api/config", headers=auth)
        old = json.loads(body)["text"]
        new = old.replace("site: lab", "site: lab2")
        assert new != old
        code, body, _ = http(f"http://{url}/api/config/apply", {"text": new}, headers=auth)
        assert code == 200, body
        assert json.loads(body)["applied"] is True
        collect(time.monotonic() + 30, "READY=1", count=2)
        note_path = tmp_path / "agent.yaml.apply.json"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and json.loads(note_path.read_text())["state"] \
                != "confirmed":
            time.sleep(0.2)
        note = json.loads(note_path.read_text())
        assert note["state"] == "confirmed", note
        assert proc.poll() is None  # the same process, restarted in place
        assert yaml.safe_load(cfg.read_text())["gateway"]["site"] == "lab2"
        assert yaml.safe_load((tmp_path / "agent.yaml.bak").read_text())["gateway"]["site"] \
            == "lab"
        code, body, _ = http(f"http://{url}/status")
        assert json.loads(body)["pid"] == proc.pid
        # The login survived the restart (web-sessions.json next to the buffer, 0600).
        code, body, _ = http(f"http://{url}/api/session", headers=auth)
        assert json.loads(body)["loggedIn"] is True, body
        code, body, _ = http(f"http://{url}/api/config/check", {"text": new}, headers=auth)
        assert code == 200, body  # the same cookie and CSRF token still change things
        store = tmp_path / "web-sessions.json"
        assert store.stat().st_mode & 0o777 == 0o600
        assert auth["Cookie"].split("=", 1)[1] not in store.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sim.stop()
        notify.close()
    reloading = [i for i, m in enumerate(messages) if "RELOADING=1" in m]
    ready = [i for i, m in enumerate(messages) if "READY=1" in m]
    assert len(reloading) == 1, messages
    assert ready[0] < reloading[0] < ready[1], messages
    assert not any("STOPPING=1" in m for m in messages[:ready[1]]), messages
    text = (tmp_path / "agent.log").read_text()
    assert "is confirmed" in text
    assert "Traceback" not in text
