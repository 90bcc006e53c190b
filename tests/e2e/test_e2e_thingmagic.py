"""End to end: reader-sim thingmagic on a pty -> edge-agent (subprocess) -> Mosquitto."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from readersim.population import generated_tags

from tests.support.cmdclient import command_client, wait_subscribed
from tests.support.harness import (
    EVENTS_TOPIC,
    AgentProcess,
    SimProcess,
    buffer_state,
    durable_collector,
    events_of,
    wait_until,
    write_config,
)
from tests.support.mosquitto import Mosquitto


def test_thingmagic_module_to_broker(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A Nano left streaming by an earlier process, in its application: the agent stops and
    drains it, configures it, and every read reaches the broker with reader, antenna, RSSI."""
    tags = generated_tags(5, seed=31)
    expected = {t.epc.hex().upper(): t for t in tags}
    sim = SimProcess("thingmagic", "--pty", "--tags", "5", "--seed", "31",
                     "--streaming-at-start", log_path=tmp_path / "sim.log")
    db = tmp_path / "buffer.db"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=db, reader={"name": "nano", "driver": "thingmagic",
                                          "baudrate": 115200, "region": "EU3",
                                          "antennas": [1], "power_dbm": 20})
    with durable_collector(mosquitto, EVENTS_TOPIC, "e2e-thingmagic") as collector:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            def all_epcs() -> bool:
                reads = [r for e in events_of(collector.messages) for r in e["tea:reads"]]
                return {r["tea:epcHex"] for r in reads} >= set(expected)

            wait_until(all_epcs, 30, "every simulated EPC", diagnostics=agent.log_text)
            time.sleep(0.3)
            reads = [r for e in events_of(collector.messages) for r in e["tea:reads"]]
            assert {r["tea:epcHex"] for r in reads} == set(expected)  # nothing invented
            for r in reads:
                tag = expected[r["tea:epcHex"]]
                assert r["tea:reader"] == "nano"
                assert r["tea:antenna"] == tag.antenna == 1
                # the simulator's jitter is +-2 dB around the tag's level
                assert abs(r["tea:rssiDbm"] - tag.rssi_dbm) <= 2.5, (r, tag.rssi_dbm)
        finally:
            assert agent.stop() == 0, agent.log_text()
            sim.stop()
    log = agent.log_text()
    assert "Traceback" not in log
    # A streaming module hears nothing but stop-reading: identify succeeding on the first
    # connect, without a single unanswered command, shows the stop went first. (Whether
    # stream frames were left to discard, logged "the module was still streaming", depends on
    # how much of the stream the port held when the agent opened it.)
    assert "no reply to" not in log
    assert "reconnecting" not in log
    assert "reader nano: ThingMagic M6e Nano firmware 01.09.00.02" in log


SECRET = b"e2e-gateway-secret-0123456789"


def test_signed_set_reader_power_reaches_the_module(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """set_reader_power (signed remote command) -> the stream pauses, 0x92 is written, 0x62
    reads it back, the stream resumes; a power the Nano cannot do is refused, named."""
    secret = tmp_path / "cmd.secret"
    secret.write_bytes(SECRET + b"\n")
    secret.chmod(0o600)
    sim = SimProcess("thingmagic", "--pty", "--tags", "3", log_path=tmp_path / "sim.log")
    db = tmp_path / "buffer.db"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=db, reader={"driver": "thingmagic", "region": "EU3",
                                          "power_dbm": 20},
                       mqtt={"health_interval_s": 3600})
    doc = yaml.safe_load(cfg.read_text())
    doc["uplink"]["commands"] = {"enabled": True, "secret_file": str(secret),
                                 "reply_prefix": "ops/replies"}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    agent = AgentProcess(cfg, tmp_path / "agent.log")
    try:
        with command_client(mosquitto, base="trace/lab/gw-test", secret=SECRET) as cc:
            wait_subscribed(cc)
            wait_until(lambda: buffer_state(db)["last_read_id"] > 0, 30, "first reads",
                       diagnostics=agent.log_text)
            reply = cc.call("set_reader_power", {"reader": "r1", "dbm": 24})
            assert reply["ok"] is True, reply
            assert reply["result"] == {"reader": "r1", "applied": True, "desiredDbm": 24,
                                       "reportedDbm": 24, "written": True}
            refused = cc.call("set_reader_power", {"reader": "r1", "dbm": 29})
            assert refused["ok"] is False, refused
            assert refused["error"]["code"] == "refused"
            assert "0x0103 msg_power_too_high" in refused["error"]["message"]
            r1 = cc.call("status")["result"]["readers"]["r1"]
            assert r1["power"]["desiredDbm"] == 24
            assert r1["power"]["reportedDbm"] == 24
            assert (r1["connects"], r1["disconnects"], r1["state"]) == (1, 0, "connected")
            assert r1["model"] == "M6e Nano"
            assert r1["temperatureC"] == 33
            before = buffer_state(db)["last_read_id"]
            wait_until(lambda: buffer_state(db)["last_read_id"] > before + 10, 30,
                       "reads after the change", diagnostics=agent.log_text)
    finally:
        code = agent.stop()
        sim.stop()
    assert code == 0, agent.log_text()
    assert "read power set to 24 dBm (was 20 dBm)" in agent.log_text()
