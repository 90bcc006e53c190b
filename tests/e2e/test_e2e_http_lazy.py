"""The page's HTTP server (aiohttp, ~12 MB of RSS) is loaded at the first connection to
http.listen, not at start (issue 12: RSS with four readers), and then serves as before: the
real agent, a real socket, /proc/PID/maps to see what the process has loaded."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.harness import AgentProcess, SimProcess, agent_status, wait_until, write_config
from tests.support.mosquitto import Mosquitto, free_port


def _aiohttp_loaded(pid: int) -> bool:
    return "/aiohttp/" in Path(f"/proc/{pid}/maps").read_text()


def test_aiohttp_is_loaded_at_the_first_connection_and_then_serves(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim = SimProcess("r2000", "--pty", "--tags", "2", log_path=tmp_path / "sim.log")
    http = f"127.0.0.1:{free_port()}"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=tmp_path / "buffer.db",
                       extra={"http": {"listen": http},
                              "status": {"socket": str(tmp_path / "agent.sock")}})
    sock = tmp_path / "agent.sock"
    agent = AgentProcess(cfg, tmp_path / "agent.log")
    try:
        wait_until(lambda: sock.exists() and agent_status(cfg)["readers"][0]["state"]
                   == "connected", 30, "the agent up", diagnostics=agent.log_text)
        assert agent_status(cfg)["http"] == http  # bound and reported from the start
        assert agent.proc is not None
        assert not _aiohttp_loaded(agent.proc.pid)
        try:
            health = urllib.request.urlopen(f"http://{http}/health", timeout=10)
            status, body = health.status, health.read()
        except urllib.error.HTTPError as exc:  # 503 while something is unhealthy
            status, body = exc.code, exc.read()
        assert status in (200, 503)
        assert "status" in json.loads(body)
        assert _aiohttp_loaded(agent.proc.pid)
        metrics = urllib.request.urlopen(f"http://{http}/metrics", timeout=5).read().decode()
        assert "edge_agent_" in metrics  # the next connections go to aiohttp directly
        page = urllib.request.urlopen(f"http://{http}/", timeout=5)
        assert page.status == 200
        assert "http: first connection: the page's server is loaded" in agent.log_text()
    finally:
        assert agent.stop() == 0, agent.log_text()
        sim.stop()
    assert "Traceback" not in agent.log_text()
