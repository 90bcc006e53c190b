"""End to end for a fixed LLRP reader (issue 11): reader-sim llrp over TCP -> edge-agent
(subprocess) -> Mosquitto, with the right reader, antenna, RSSI and EPC; a dropped connection
costs no committed read."""

from __future__ import annotations

from pathlib import Path

import yaml
from readersim.population import generated_tags

from tests.support.cmdclient import command_client, wait_subscribed
from tests.support.harness import (
    EVENTS_TOPIC,
    AgentProcess,
    SimProcess,
    all_committed_delivered,
    buffer_state,
    durable_collector,
    events_of,
    wait_until,
    write_config,
)
from tests.support.mosquitto import Mosquitto


def test_llrp_reader_to_broker(tmp_path: Path, mosquitto: Mosquitto) -> None:
    expected = {t.epc.hex().upper(): t.antenna
                for t in generated_tags(6, seed=5, antennas=(1, 2))}
    sim = SimProcess("llrp", "--tcp", "127.0.0.1:0", "--tags", "6", "--seed", "5",
                     "--tag-antennas", "1,2",
                     "--drop-after", "2.0", log_path=tmp_path / "sim.log")
    host, port = sim.host_port
    db = tmp_path / "buffer.db"
    path = write_config(tmp_path / "agent.yaml", reader_port="unused", broker=mosquitto,
                        buffer=db, reader={"name": "dock-fx", "driver": "llrp"})
    cfg = yaml.safe_load(path.read_text())
    reader = cfg["readers"][0]
    reader.pop("baudrate")
    reader.update(host=host, port=port, antennas=[1, 2], keepalive_s=1)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with durable_collector(mosquitto, EVENTS_TOPIC, "e2e-llrp") as collector:
        agent = AgentProcess(path, tmp_path / "agent.log")
        try:
            def all_epcs_and_a_reconnect() -> bool:
                reads = [r for e in events_of(collector.messages) for r in e["tea:reads"]]
                return ({r["tea:epcHex"] for r in reads} >= set(expected)
                        and "reconnecting" in agent.log_text())

            wait_until(all_epcs_and_a_reconnect, 30, "every EPC and one dropped connection",
                       diagnostics=agent.log_text)
            sim.stop()  # no new reads: everything committed must now reach the broker
            wait_until(lambda: all_committed_delivered(collector.messages, db), 20,
                       "every committed read delivered", diagnostics=agent.log_text)
        finally:
            assert agent.stop() == 0, agent.log_text()
            sim.stop()
    reads = [r for e in events_of(collector.messages) for r in e["tea:reads"]]
    assert {r["tea:epcHex"] for r in reads} == set(expected)  # nothing invented
    for r in reads:
        assert r["tea:reader"] == "dock-fx"
        assert r["tea:antenna"] == expected[r["tea:epcHex"]]
        assert -100 < r["tea:rssiDbm"] < 0
    log = agent.log_text()
    assert "Traceback" not in log
    assert "reader dock-fx: LLRP reader" in log


def test_an_unplugged_antenna_shows_in_alarms_status_tail_and_metrics(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Item 4: the reader's AntennaEvents become an alarm on .../alarms, the per-antenna state
    in ``status``, ``tail`` and /metrics, and come back when the antenna is plugged in."""
    import json
    import re
    import subprocess
    import sys
    import urllib.request

    from tests.support.harness import agent_cli, agent_status
    from tests.support.mosquitto import free_port

    sim = SimProcess("llrp", "--tcp", "127.0.0.1:0", "--tags", "4", "--tag-antennas", "1,2",
                     "--antenna-down", "2:3:4", log_path=tmp_path / "sim.log")
    host, port = sim.host_port
    sock = tmp_path / "agent.sock"
    http = f"127.0.0.1:{free_port()}"
    path = write_config(tmp_path / "agent.yaml", reader_port="unused", broker=mosquitto,
                        buffer=tmp_path / "buffer.db", reader={"name": "dock-fx",
                                                               "driver": "llrp"},
                        extra={"status": {"socket": str(sock)}, "http": {"listen": http}})
    cfg = yaml.safe_load(path.read_text())
    cfg["readers"][0].pop("baudrate")
    cfg["readers"][0].update(host=host, port=port, antennas=[1, 2], keepalive_s=1)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    alarms_topic = EVENTS_TOPIC.rsplit("/", 1)[0] + "/alarms"
    with durable_collector(mosquitto, alarms_topic, "e2e-llrp-antenna") as collector:
        agent = AgentProcess(path, tmp_path / "agent.log")
        try:
            wait_until(lambda: sock.exists()
                       and agent_status(path)["readers"][0]["state"] == "connected", 30,
                       "the reader to connect", diagnostics=agent.log_text)
            with subprocess.Popen([sys.executable, "-m", "agent", "tail", "-c", str(path)],
                                  stdout=subprocess.PIPE, text=True) as tail:
                assert tail.stdout is not None
                seen: list[str] = []
                while not any("ant 2 DISCONNECTED" in line for line in seen):
                    seen.append(tail.stdout.readline())
                    assert len(seen) < 5000, seen[-20:]
                tail.kill()
            reader = agent_status(path)["readers"][0]
            assert reader["antennas"]["2"] == "disconnected"
            metrics = urllib.request.urlopen(f"http://{http}/metrics", timeout=5).read().decode()
            assert re.search(r'^edge_agent_reader_antenna_up\{.*antenna="2".*\} 0', metrics,
                             re.M), metrics
            human = agent_cli("status", "-c", str(path)).stdout
            assert "ant 2 DISCONNECTED" in human, human

            def back() -> bool:
                alarms = [json.loads(m.payload) for m in collector.messages]
                return [a.get("type") for a in alarms if a.get("antenna") == 2] == [
                    "antenna_disconnected", "antenna_connected"]

            wait_until(back, 20, "both antenna alarms at the broker",
                       diagnostics=agent.log_text)
            assert agent_status(path)["readers"][0]["antennas"]["2"] == "connected"
        finally:
            assert agent.stop() == 0, agent.log_text()
            sim.stop()
    assert "antenna 2 DISCONNECTED" in agent.log_text()


SECRET = b"e2e-gateway-secret-0123456789"


def test_signed_set_reader_power_reaches_the_llrp_reader(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """set_reader_power (signed remote command) on an LLRP reader: the ROSpec is replaced with
    the new transmit power on the same connection, GET_ROSPECS reads it back, reads go on; the
    simulator's own log shows the power it now holds; a bad antenna is refused, named."""
    secret = tmp_path / "cmd.secret"
    secret.write_bytes(SECRET + b"\n")
    secret.chmod(0o600)
    sim = SimProcess("llrp", "--tcp", "127.0.0.1:0", "--tags", "4", "--tag-antennas", "1,2",
                     "--log-level", "INFO", log_path=tmp_path / "sim.log")
    host, port = sim.host_port
    db = tmp_path / "buffer.db"
    path = write_config(tmp_path / "agent.yaml", reader_port="unused", broker=mosquitto,
                        buffer=db, reader={"driver": "llrp"}, mqtt={"health_interval_s": 3600})
    doc = yaml.safe_load(path.read_text())
    reader = doc["readers"][0]
    reader.pop("baudrate")
    reader.update(host=host, port=port, antennas=[1, 2], power_dbm=30)
    doc["uplink"]["commands"] = {"enabled": True, "secret_file": str(secret),
                                 "reply_prefix": "ops/replies"}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    agent = AgentProcess(path, tmp_path / "agent.log")
    try:
        with command_client(mosquitto, base="trace/lab/gw-test", secret=SECRET) as cc:
            wait_subscribed(cc)
            wait_until(lambda: buffer_state(db)["last_read_id"] > 0, 30, "first reads",
                       diagnostics=agent.log_text)
            reply = cc.call("set_reader_power", {"reader": "r1", "dbm": {"1": 24, "2": 18}})
            assert reply["ok"] is True, reply
            assert reply["result"] == {"reader": "r1", "applied": True,
                                       "desiredDbm": {"1": 24, "2": 18},
                                       "reportedDbm": {"1": 24, "2": 18}, "written": True}
            bad = cc.call("set_reader_power", {"reader": "r1", "dbm": {"3": 20}})
            assert bad["ok"] is False, bad
            assert bad["error"]["code"] == "bad_argument"
            assert "antenna(s) [3] are not in this reader's antennas" in bad["error"]["message"]
            r1 = cc.call("status")["result"]["readers"]["r1"]
            assert r1["power"]["desiredDbm"] == {"1": 24, "2": 18}
            assert r1["power"]["reportedDbm"] == {"1": 24, "2": 18}
            assert (r1["connects"], r1["disconnects"], r1["state"]) == (1, 0, "connected")
            before = buffer_state(db)["last_read_id"]
            wait_until(lambda: buffer_state(db)["last_read_id"] > before + 10, 30,
                       "reads after the change", diagnostics=agent.log_text)
    finally:
        code = agent.stop()
        sim.stop()
    assert code == 0, agent.log_text()
    log = agent.log_text()
    assert "Traceback" not in log
    assert ("transmit power confirmed by GET_ROSPECS: antenna 1: 24 dBm, antenna 2: 18 dBm"
            in log)
    added = (tmp_path / "sim.log").read_text()
    assert "power [1: 30 dBm, 2: 30 dBm]" in added
    assert "power [1: 24 dBm, 2: 18 dBm]" in added
