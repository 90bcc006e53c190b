"""State for the cloud, end to end: retained birth (online), periodic health, retained offline
on a clean stop, and the last will when the agent dies without one."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.harness import AgentProcess, SimProcess, write_config
from tests.support.mosquitto import Mosquitto, Received, collect

STATUS = "trace/lab/gw-test/status"
HEALTH = "trace/lab/gw-test/health"


def _state(m: Received) -> str:
    return str(json.loads(m.payload)["state"])


def test_birth_health_and_offline(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim = SimProcess("r2000", "--pty", "--tags", "3", log_path=tmp_path / "sim.log")
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=tmp_path / "buffer.db", mqtt={"health_interval_s": 1})
    with collect(mosquitto, "trace/lab/gw-test/#") as seen:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            (birth,) = seen.wait_for(lambda m: m.topic == STATUS and _state(m) == "online", 20)
            body = json.loads(birth.payload)
            assert body["gateway"] == "gw-test"
            assert body["readers"] == ["r1"]
            health = seen.wait_for(lambda m: m.topic == HEALTH, 20)[0]
            h = json.loads(health.payload)
            assert "r1" in h["readers"]
            assert "buffer" in h
            assert "uplink" in h
        finally:
            assert agent.stop() == 0, agent.log_text()
            sim.stop()
        seen.wait_for(lambda m: m.topic == STATUS and _state(m) == "offline", 10)
    # Retained: a newcomer learns the last state at once.
    with collect(mosquitto, STATUS) as late:
        (last,) = late.wait_for(lambda m: True, 5)
        assert last.retain
        assert _state(last) == "offline"


def test_last_will_on_sigkill(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim = SimProcess("r2000", "--pty", "--tags", "1", log_path=tmp_path / "sim.log")
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=tmp_path / "buffer.db", mqtt={"keepalive_s": 5})
    with collect(mosquitto, STATUS) as seen:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            seen.wait_for(lambda m: _state(m) == "online", 20)
            agent.kill()
            seen.wait_for(lambda m: _state(m) == "offline", 20)  # sent by the broker: the will
        finally:
            sim.stop()
