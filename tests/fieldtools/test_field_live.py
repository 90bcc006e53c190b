"""status, tail, /metrics and /health against a running agent (reader-sim + Mosquitto), and
both log formats."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from agent.osnames import thread_names
from tests.support.harness import (
    AgentProcess,
    SimProcess,
    agent_cli,
    agent_status,
    metric,
    wait_until,
    write_config,
)
from tests.support.mosquitto import Mosquitto, free_port


def _http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def _health_is(url: str, code: int) -> bool:
    try:
        return _http(url)[0] == code
    except urllib.error.URLError:  # not listening yet
        return False


def test_status_tail_metrics_health_against_a_running_agent(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim = SimProcess("r2000", "--pty", "--tags", "3", "--seed", "4", log_path=tmp_path / "sim.log")
    sock = tmp_path / "agent.sock"
    http = f"127.0.0.1:{free_port()}"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=tmp_path / "buffer.db",
                       extra={"status": {"socket": str(sock)}, "http": {"listen": http}})
    agent = AgentProcess(cfg, tmp_path / "agent.log")
    try:
        wait_until(lambda: sock.exists()
                   and agent_status(cfg)["readers"][0]["state"] == "connected", 30,
                   "the reader to connect", diagnostics=agent.log_text)
        first = agent_status(cfg)
        time.sleep(1.5)
        second = agent_status(cfg)
        r1, r2 = first["readers"][0], second["readers"][0]
        assert r2["name"] == "r1"
        assert r2["firmware"] == "1.9"
        assert r2["readsTotal"] > r1["readsTotal"] > 0
        assert r2["readRate"] > 0
        assert second["uplink"]["connected"] is True
        assert second["uplink"]["broker"] == f"127.0.0.1:{mosquitto.port}"
        assert second["health"] == {"ok": True, "reasons": []}
        assert {"depth", "oldestEventAgeS", "sizeBytes", "dropped", "deadLetters",
                "diskFull"} <= set(second["buffer"])
        assert second["clock"]["synchronised"] in (True, False, None)
        # top -H, ps -L and py-spy show what each thread is (agent/osnames.py)
        assert agent.proc is not None
        shown = set(thread_names(agent.proc.pid).values())
        assert {"edge-agent", "buffer-writer", "serial-ports", "mqtt-client"} <= shown, shown

        human = agent_cli("status", "--socket", str(sock))
        assert human.returncode == 0, human.stderr
        assert re.search(r"r1\s+connected\s+1\.9", human.stdout), human.stdout
        assert "health: OK" in human.stdout

        # tail: a read with its EPC hex and decoded identity within a few seconds, then events.
        with subprocess.Popen([sys.executable, "-m", "agent", "tail", "-c", str(cfg),
                               "--reader", "r1"], stdout=subprocess.PIPE, text=True) as tail:
            assert tail.stdout is not None
            lines = [tail.stdout.readline() for _ in range(6)]
            tail.kill()
        assert lines[0].startswith("tailing r1")
        read = next((ln for ln in lines if " ant " in ln), "")
        assert re.search(r"r1 ant 1 +-\d+ dBm +3034257BF[0-9A-F]{15} +"
                         r"urn:epc:id:sgtin:0614141\.\d+\.\d+ +\(01\)\d{14}\(21\)\d+", read), read
        with subprocess.Popen([sys.executable, "-m", "agent", "tail", "--json", "--socket",
                               str(sock)], stdout=subprocess.PIPE, text=True) as tail:
            assert tail.stdout is not None
            kinds: set[str] = set()
            deadline = time.monotonic() + 15
            while not {"read", "event"} <= kinds and time.monotonic() < deadline:
                item = json.loads(tail.stdout.readline())
                kinds.add(item["type"])
                if item["type"] == "event":
                    assert item["epcList"][0].startswith("urn:epc:")
                    assert item["readers"] == ["r1"]
            tail.kill()
        assert {"read", "event"} <= kinds

        status, metrics = _http(f"http://{http}/metrics")
        assert status == 200
        assert "# TYPE edge_agent_reads_total counter" in metrics
        assert metric(metrics, 'edge_agent_reads_total{reader="r1"}') > 0
        assert metric(metrics, 'edge_agent_reader_up{reader="r1"}') == 1
        assert metric(metrics, f'edge_agent_uplink_connected{{broker="127.0.0.1:'
                                f'{mosquitto.port}"}}') == 1
        assert metric(metrics, "edge_agent_uplink_published_total") > 0
        assert metric(metrics, "edge_agent_buffer_dead_letters") == 0
        assert metric(metrics, "edge_agent_healthy") == 1
        for name in ("decoder_frames_total", "decoder_bad_checksums_total",
                     "decoder_bytes_discarded_total", "buffer_reads_pending",
                     "buffer_events_pending", "buffer_oldest_event_age_seconds",
                     "buffer_size_bytes", "buffer_dropped_total", "uplink_refused_total",
                     "uplink_inflight", "clock_synchronised", "agent_info"):
            assert f"# TYPE edge_agent_{name} " in metrics, name
        status, body = _http(f"http://{http}/health")
        assert (status, json.loads(body)) == (200, {"status": "ok", "reasons": []})
        assert _http(f"http://{http}/nope")[0] == 404

        # The buffer cannot be purged under a running agent (detected via its socket).
        purge = agent_cli("buffer", "purge", "--yes", "-c", str(cfg))
        assert purge.returncode == 1
        assert "the agent is running" in purge.stderr
    finally:
        assert agent.stop() == 0, agent.log_text()
        sim.stop()
    assert not sock.exists()  # removed at shutdown
    log = agent.log_text()
    assert "Traceback" not in log
    # Text log format: "date time LEVEL logger: message".
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO +agent\.fieldtools\.server: "
                     r"status socket ", log, re.M), log[:2000]


def test_health_503_with_reasons_and_json_logs(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sock = tmp_path / "agent.sock"
    http = f"127.0.0.1:{free_port()}"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=str(tmp_path / "ttyGONE"),
                       broker=mosquitto, buffer=tmp_path / "buffer.db",
                       extra={"status": {"socket": str(sock)},
                              "http": {"listen": http, "reader_down_max_s": 0.5}})
    agent = AgentProcess(cfg, tmp_path / "agent.log", "--log-format", "json")
    try:
        wait_until(lambda: _health_is(f"http://{http}/health", 503), 30, "/health to be 503",
                   every_s=0.3, diagnostics=agent.log_text)
        status, body = _http(f"http://{http}/health")
        doc = json.loads(body)
        assert status == 503
        assert doc["status"] == "unhealthy"
        assert any(r.startswith("reader r1: reconnecting for") and "ttyGONE" in r
                   for r in doc["reasons"]), doc
        metrics = _http(f"http://{http}/metrics")[1]
        assert metric(metrics, "edge_agent_healthy") == 0
        assert metric(metrics, 'edge_agent_reader_up{reader="r1"}') == 0
        human = agent_cli("status", "--socket", str(sock))
        assert "health: UNHEALTHY" in human.stdout
    finally:
        assert agent.stop() == 0, agent.log_text()
    lines = [ln for ln in agent.log_text().splitlines() if ln.strip()]
    assert lines
    for ln in lines:
        entry = json.loads(ln)  # every line is one JSON object
        assert {"ts", "level", "logger", "msg"} <= set(entry)
    assert any(e["level"] == "WARNING" and "reader r1" in e["msg"]
               for e in map(json.loads, lines))


def test_status_without_an_agent_exits_1(tmp_path: Path) -> None:
    proc = agent_cli("status", "--socket", str(tmp_path / "none.sock"))
    assert proc.returncode == 1
    assert "no agent answers on" in proc.stderr


def test_status_counts_broker_refusals_by_reason_code(
        tmp_path: Path, mosquitto_factory: Any) -> None:
    """An ACL that does not allow the events topic: each refused message is counted under its
    MQTT 5 reason code (0x87 Not authorized) in `edge-agent status` and in /metrics."""
    base = "trace/lab/gw-test"
    broker = mosquitto_factory(users={"edge": "pw"},
                               acl=["user edge", f"topic write {base}/status",
                                    f"topic write {base}/health"])
    (tmp_path / "pw").write_text("pw\n")
    (tmp_path / "pw").chmod(0o600)
    sim = SimProcess("r2000", "--pty", "--tags", "2", log_path=tmp_path / "sim.log")
    sock = tmp_path / "agent.sock"
    http = f"127.0.0.1:{free_port()}"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=broker,
                       buffer=tmp_path / "buffer.db",
                       mqtt={"username": "edge", "password_file": str(tmp_path / "pw")},
                       extra={"status": {"socket": str(sock)}, "http": {"listen": http}})
    agent = AgentProcess(cfg, tmp_path / "agent.log")
    try:
        def refused() -> dict[str, int]:
            if not sock.exists():
                return {}
            by_reason: dict[str, int] = agent_status(cfg)["uplink"]["refusedByReason"]
            return by_reason

        wait_until(lambda: refused().get("0x87 Not authorized", 0) >= 2, 30,
                   "refusals counted under 0x87", diagnostics=agent.log_text)
        snap = agent_status(cfg)
        assert set(snap["uplink"]["refusedByReason"]) == {"0x87 Not authorized"}
        assert snap["uplink"]["deliveredEvents"] == 0
        code, metrics = _http(f"http://{http}/metrics")
        assert code == 200
        assert re.search(r'^edge_agent_uplink_refused_total\{reason="0x87 Not authorized"\} '
                         r"[1-9]", metrics, re.M), metrics
    finally:
        agent.stop()
        sim.stop()


def test_bad_requests_on_the_local_doors_get_one_line_each(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Issue 13 item 6: garbage on the status socket and the HTTP port is answered, logged as
    one WARNING line (rate-limited per door), never a traceback, and the agent keeps serving."""
    import socket as so

    sock = tmp_path / "agent.sock"
    port = free_port()
    cfg = write_config(tmp_path / "agent.yaml", reader_port=str(tmp_path / "ttyGONE"),
                       broker=mosquitto, buffer=tmp_path / "buffer.db",
                       extra={"status": {"socket": str(sock)},
                              "http": {"listen": f"127.0.0.1:{port}"}})
    agent = AgentProcess(cfg, tmp_path / "agent.log")

    def unix(data: bytes) -> bytes:
        with so.socket(so.AF_UNIX, so.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(sock))
            s.sendall(data)
            with contextlib.suppress(OSError):
                s.shutdown(so.SHUT_WR)
            out = b""
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    out += chunk
            return out

    def tcp(data: bytes) -> bytes:
        with so.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(data)
            out = b""
            with contextlib.suppress(OSError):
                while chunk := s.recv(65536):
                    out += chunk
            return out

    try:
        wait_until(lambda: sock.exists(), 30, "the status socket", diagnostics=agent.log_text)
        assert b"bad request" in unix(b'{"cmd": "tail", "reader": [1, 2]}\n')
        assert b"bad request" in unix(b"nonsense\n")
        unix(b"x" * 200_000 + b"\n")  # over the stream limit
        # HTTP/1.1 requires a Host header (RFC 9112 3.2); aiohttp answers 400 without one.
        host = b"Host: 127.0.0.1\r\nConnection: close\r\n"
        assert b" 400 " in tcp(b"GET /metrics HTTP/1.1\r\n\r\n").split(b"\r\n")[0]
        assert tcp(b"POST /metrics HTTP/1.1\r\n" + host + b"\r\n").startswith(b"HTTP/1.1 405")
        assert tcp(b"GET /nope HTTP/1.1\r\n" + host + b"\r\n").startswith(b"HTTP/1.1 404")
        tcp(b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 200_000)  # a header that never ends
        assert agent_status(cfg)["gateway"]["id"] == "gw-test"  # still serving
        assert tcp(b"GET /metrics HTTP/1.1\r\n" + host + b"\r\n").startswith(b"HTTP/1.1 200")
    finally:
        assert agent.stop() == 0, agent.log_text()
    log = agent.log_text()
    assert "Traceback" not in log
    assert "status socket: bad request" in log
    assert "http: bad request" in log
