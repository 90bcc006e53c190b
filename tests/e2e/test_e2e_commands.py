"""Remote commands end to end through the real agent process: reader-sim r2000 on a pty ->
`edge-agent run` (subprocess, commands enabled with a 0600 secret file) -> test Mosquitto.
Commands are signed with agent/uplink/commands.py (tests/support/cmdclient.py) and answered on the
MQTT 5 Response Topic with the Correlation Data."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cmdclient import CommandClient, command_client, signed_payload, wait_subscribed
from tests.support.harness import AgentProcess, SimProcess, buffer_state, wait_until, write_config
from tests.support.mosquitto import Mosquitto

BASE = "trace/lab/gw-test"
SECRET = b"e2e-gateway-secret-0123456789"


@dataclass
class Rig:
    agent: AgentProcess
    sim: SimProcess
    cc: CommandClient
    cfg: Path
    db: Path
    secret_file: Path
    broker: Mosquitto

    def write(self, *, reader: dict[str, Any] | None = None,
              mqtt: dict[str, Any] | None = None) -> None:
        """(Re)write the agent's config file: the same as at start plus the overrides."""
        write_agent_config(self.cfg, self.sim.port, self.broker, self.db, self.secret_file,
                           reader=reader, mqtt=mqtt)


def write_agent_config(path: Path, port: str, broker: Mosquitto, db: Path, secret: Path, *,
                       reader: dict[str, Any] | None = None,
                       mqtt: dict[str, Any] | None = None) -> None:
    write_config(path, reader_port=port, broker=broker, buffer=db, reader=reader,
                 mqtt={"health_interval_s": 3600, **(mqtt or {})})
    cfg = yaml.safe_load(path.read_text())
    cfg["uplink"]["commands"] = {"enabled": True, "secret_file": str(secret),
                                 "reply_prefix": "ops/replies"}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture
def rig(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Rig]:
    secret = tmp_path / "cmd.secret"
    secret.write_bytes(SECRET + b"\n")
    secret.chmod(0o600)
    sim = SimProcess("r2000", "--pty", "--tags", "3", log_path=tmp_path / "sim.log")
    cfg, db = tmp_path / "agent.yaml", tmp_path / "buffer.db"
    write_agent_config(cfg, sim.port, mosquitto, db, secret)
    agent = AgentProcess(cfg, tmp_path / "agent.log")
    try:
        with command_client(mosquitto, base=BASE, secret=SECRET) as cc:
            try:
                wait_subscribed(cc)
            except AssertionError as exc:
                raise AssertionError(f"agent never answered a ping\n{agent.log_text()}") from exc
            yield Rig(agent, sim, cc, cfg, db, secret, mosquitto)
        assert agent.alive(), agent.log_text()
    finally:
        code = agent.stop()
        sim.stop()
    assert code == 0, agent.log_text()


def ok(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["ok"] is True, reply
    result: dict[str, Any] = reply["result"]
    return result


def reads(db: Path) -> int:
    return buffer_state(db)["last_read_id"]


def reader_state(rig: Rig) -> str:
    return str(ok(rig.cc.call("status"))["readers"]["r1"]["state"])


def test_ping_status_and_power_arguments(rig: Rig) -> None:
    reply = rig.cc.call("ping")
    assert reply["command"] == "ping"
    assert ok(reply) == {"pong": True}
    assert len(reply["nonce"]) == 16  # our nonce is echoed
    wait_until(lambda: reader_state(rig) == "connected", 20, "reader r1 connected",
               diagnostics=rig.agent.log_text)
    status = ok(rig.cc.call("status"))
    r1 = status["readers"]["r1"]
    assert r1["driver"] == "r2000"
    assert r1["port"] == rig.sim.port
    assert r1["connects"] >= 1
    assert status["uplink"]["connected"] is True
    assert r1["power"] == {"desiredDbm": None, "reportedDbm": 30, "error": None}
    bad = rig.cc.call("set_reader_power", {"reader": "r1", "dbm": 99})
    assert bad["ok"] is False
    assert bad["error"]["code"] == "bad_argument"
    assert "0..33" in bad["error"]["message"]
    bad = rig.cc.call("set_reader_power", {"reader": "r1", "dbm": 20.5})
    assert bad["error"]["code"] == "bad_argument"
    bad = rig.cc.call("set_reader_power", {"reader": "nope", "dbm": 20})
    assert bad["error"]["code"] == "bad_argument"


def test_set_power_is_applied_to_the_running_reader(rig: Rig) -> None:
    """set_reader_power -> applied between inventory rounds, read back from the reader,
    no reconnect; per-port form; while the reader is stopped it is kept and applied on
    start."""
    wait_until(lambda: reads(rig.db) > 0, 30, "first reads", diagnostics=rig.agent.log_text)
    power = ok(rig.cc.call("set_reader_power", {"reader": "r1", "dbm": 20}))
    assert power == {"reader": "r1", "applied": True, "desiredDbm": 20, "reportedDbm": 20,
                     "written": True}
    r1 = ok(rig.cc.call("status"))["readers"]["r1"]
    assert r1["power"] == {"desiredDbm": 20, "reportedDbm": 20, "error": None}
    assert (r1["connects"], r1["disconnects"], r1["state"]) == (1, 0, "connected")
    before = reads(rig.db)
    wait_until(lambda: reads(rig.db) > before + 10, 30, "reads after the change",
               diagnostics=rig.agent.log_text)
    ports = ok(rig.cc.call("set_reader_power", {"reader": "r1", "dbm": {"1": 25, "3": 18}}))
    assert ports["applied"] is True
    assert ports["reportedDbm"] == {"1": 25, "2": 20, "3": 18, "4": 20}
    assert ok(rig.cc.call("stop_reader", {"reader": "r1"}))["state"] == "stopped"
    queued = ok(rig.cc.call("set_reader_power", {"reader": "r1", "dbm": 22}))
    assert (queued["applied"], queued["queued"]) == (False, True)
    assert "is stopped" in queued["note"]
    assert "applied when it connects" in queued["note"]
    assert ok(rig.cc.call("start_reader", {"reader": "r1"}))["state"] == "started"
    wait_until(lambda: ok(rig.cc.call("status"))["readers"]["r1"]["power"]["reportedDbm"] == 22,
               20, "the queued power applied on connect", diagnostics=rig.agent.log_text)
    r1 = ok(rig.cc.call("status"))["readers"]["r1"]
    assert r1["power"] == {"desiredDbm": 22, "reportedDbm": 22, "error": None}
    log = rig.agent.log_text()
    assert "output power set to 20 dBm (was [30, 30, 30, 30])" in log
    assert "output power set to 22 dBm (was [25, 20, 18, 20])" in log


def test_set_reader_settings_reconnects_and_confirms(rig: Rig) -> None:
    """set_reader_settings (signed, like set_reader_power) -> validated by the reader's config
    model, applied by a clean reconnect (configure() sends the new antennas / inventory mode),
    confirmed once the reader is connected again; reads go on; refusals name the field."""
    wait_until(lambda: reads(rig.db) > 0, 30, "first reads", diagnostics=rig.agent.log_text)
    bad = rig.cc.call("set_reader_settings", {"reader": "r1", "session": 7})
    assert bad["error"]["code"] == "bad_argument"
    assert bad["error"]["message"].startswith("session: Input should be less than or equal")
    bad = rig.cc.call("set_reader_settings", {"reader": "r1", "reader_mode": 2})
    assert bad["error"]["code"] == "bad_argument"
    assert "not a setting of a r2000 reader" in bad["error"]["message"]
    out = ok(rig.cc.call("set_reader_settings", {"reader": "r1", "antennas": [1, 2],
                                                 "inventory": "session", "session": 2}))
    assert out == {
        "reader": "r1", "confirmed": True,
        "desired": {"antennas": [1, 2], "inventory": "session", "session": 2},
        "readBack": None, "verifiedBy": "connect",
        "note": "a r2000 reader cannot report its antennas or session: confirmed means it "
                "was configured with them at connect and reads go on"}
    r1 = ok(rig.cc.call("status"))["readers"]["r1"]
    assert (r1["connects"], r1["disconnects"], r1["state"]) == (2, 0, "connected")
    assert r1["settings"]["desired"] == {"antennas": [1, 2], "session": 2,
                                         "inventory": "session", "target": "A"}
    before = reads(rig.db)
    wait_until(lambda: reads(rig.db) > before + 10, 30, "reads after the change",
               diagnostics=rig.agent.log_text)
    log = rig.agent.log_text()
    assert "reconnecting to apply new reader settings" in log
    assert "reconnecting with backoff" not in log


def test_stop_and_start_reader(rig: Rig) -> None:
    wait_until(lambda: reads(rig.db) > 0, 30, "first reads", diagnostics=rig.agent.log_text)
    assert ok(rig.cc.call("stop_reader", {"reader": "r1"})) == {"reader": "r1",
                                                                "state": "stopped"}
    time.sleep(0.5)  # reads already handed to ingest are committed
    before = reads(rig.db)
    time.sleep(2.0)
    assert reads(rig.db) == before, "reads kept coming after stop_reader"
    assert reader_state(rig) == "stopped"
    assert ok(rig.cc.call("stop_reader", {"reader": "r1"}))["state"] == "not running"
    assert ok(rig.cc.call("start_reader", {"reader": "r1"}))["state"] == "started"
    wait_until(lambda: reads(rig.db) > before, 30, "reads after start_reader",
               diagnostics=rig.agent.log_text)
    wait_until(lambda: reader_state(rig) == "connected", 20, "r1 connected again")
    assert ok(rig.cc.call("start_reader", {"reader": "r1"}))["state"] == "already running"
    assert rig.cc.call("stop_reader", {"reader": "r9"})["error"]["code"] == "bad_argument"


def test_reload(rig: Rig) -> None:
    same = ok(rig.cc.call("reload"))
    assert same == {"valid": True, "changed": [], "applied": [], "restartRequired": False}
    assert ok(rig.cc.call("status"))["uplink"]["drainRateEventsS"] is None

    rig.write(mqtt={"drain_rate_events_s": 250})
    live = ok(rig.cc.call("reload"))
    assert live["changed"] == ["uplink"]
    assert live["applied"] == ["uplink.mqtt.drain_rate_events_s"]
    assert live["restartRequired"] is False
    assert ok(rig.cc.call("status"))["uplink"]["drainRateEventsS"] == 250
    again = ok(rig.cc.call("reload"))  # the same file again: nothing new to apply
    assert again == {"valid": True, "changed": [], "applied": [], "restartRequired": False}
    rig.write()  # back to unlimited: applied too
    back = ok(rig.cc.call("reload"))
    assert back["applied"] == ["uplink.mqtt.drain_rate_events_s"]
    assert ok(rig.cc.call("status"))["uplink"]["drainRateEventsS"] is None

    rig.write(reader={"port": "/dev/ttyUSB-elsewhere"})
    moved = ok(rig.cc.call("reload"))
    assert "readers" in moved["changed"]
    assert moved["restartRequired"] is True

    (rig.cfg).write_text("gateway: {id: gw-test\n")  # broken YAML
    broken = rig.cc.call("reload")
    assert broken["ok"] is False
    assert broken["error"]["code"] == "invalid_config"
    assert ok(rig.cc.call("ping")) == {"pong": True}  # still running


def test_refused_commands_get_errors_and_the_agent_keeps_running(rig: Rig) -> None:
    cc = rig.cc
    unsigned = json.dumps({"ts": int(time.time()), "nonce": "nonce-unsigned-1",
                           "body": {}}).encode()
    r = cc.call_raw("stop_reader", unsigned)
    assert (r["ok"], r["error"]["code"]) == (False, "malformed")
    # never answered on the topic the (unverified) sender chose: on the agent's own
    assert cc.last_topic == f"{BASE}/cmd-reply/stop_reader"
    wrong = signed_payload(b"not-the-secret", "stop_reader", {"reader": "r1"})
    r = cc.call_raw("stop_reader", wrong)
    assert (r["ok"], r["error"]["code"]) == (False, "unauthorised")
    assert cc.last_topic == f"{BASE}/cmd-reply/stop_reader"
    stale = signed_payload(SECRET, "stop_reader", {"reader": "r1"}, ts=int(time.time()) - 3600)
    r = cc.call_raw("stop_reader", stale)
    assert (r["ok"], r["error"]["code"]) == (False, "stale")
    first = signed_payload(SECRET, "ping", nonce="nonce-replay-0001")
    assert ok(cc.call_raw("ping", first)) == {"pong": True}
    r = cc.call_raw("ping", first)  # the same bytes again
    assert (r["ok"], r["error"]["code"]) == (False, "replayed")
    r = cc.call_raw("ping", b"\xff\xfe not json")
    assert r["error"]["code"] == "malformed"
    # nothing was executed: the reader still runs, and the agent answers
    assert reader_state(rig) in ("connected", "starting", "reconnecting")
    assert ok(cc.call("ping")) == {"pong": True}
    assert rig.agent.alive()
    log = rig.agent.log_text()
    assert "commands: refused 'stop_reader': bad signature (unauthorised)" in log
    assert "commands: refused 'ping': nonce already used (replayed)" in log
    assert "(malformed)" in log
    assert "(stale)" in log
    assert "commands: executed 'stop_reader'" not in log
    # counted where a technician looks: `edge-agent status` (and /metrics commands_total)
    proc = subprocess.run([sys.executable, "-m", "agent", "status", "--json", "-c",
                           str(rig.cfg)], capture_output=True, text=True, timeout=30, check=True)
    counts = json.loads(proc.stdout)["commands"]
    assert counts["refused"] >= 5, counts
    assert counts["executed"] >= 2, counts
    assert counts["handlerErrors"] == 0, counts
