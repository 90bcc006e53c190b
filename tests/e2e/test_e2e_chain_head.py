"""The chain head in the retained status stays fresh (issue 14, docs/provenance.md).

A real agent, a real Mosquitto and a simulated reader. ``health_interval_s`` is 600 s, so
nothing but the head-driven refresh can update the retained status during the test:

1. after the documents are PUBACKed (the outbox empty), a subscriber that arrives late reads
   the retained status and finds the head of the last document (seq and hash);
2. after a clean stop, the retained (offline) status names the final head;
3. after SIGKILL, the broker's will is the retained status: offline, ``chainAtConnect`` the
   head as the agent knew it at connect, and no ``chain`` (the will cannot know later ones);
   after a reconnect, the will registered then names the head known at that reconnect.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import yaml

from agent.buffer.chain import head as chain_head
from tests.support.harness import (
    AgentProcess,
    SimProcess,
    buffer_state,
    wait_until,
    write_config,
)
from tests.support.mosquitto import Collector, Mosquitto, collect

BASE = "trace/lab/gw-test"


def _retained_status(broker: Mosquitto) -> dict[str, Any]:
    """The retained status as a subscriber arriving now gets it."""
    with collect(broker, f"{BASE}/status") as c:
        (msg, *_) = c.wait_for(lambda m: m.retain, timeout_s=5)
    doc: dict[str, Any] = json.loads(msg.payload)
    return doc


def _documents(c: Collector) -> dict[int, bytes]:
    return {json.loads(m.payload)["tea:seq"]: m.payload for m in c.messages
            if m.topic.endswith("/events")}


def _config(tmp_path: Path, sim: SimProcess, broker: Mosquitto) -> Path:
    return write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=broker,
                        buffer=tmp_path / "buffer.db",
                        mqtt={"health_interval_s": 600, "batch_max_events": 5})


def test_retained_status_follows_the_chain_head_and_the_will_names_the_head_at_connect(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    db = tmp_path / "buffer.db"
    sim = SimProcess("r2000", "--pty", "--tags", "4", "--read-rate", "20",
                     log_path=tmp_path / "sim1.log")
    cfg = _config(tmp_path, sim, mosquitto)
    with collect(mosquitto, f"{BASE}/events") as docs:
        agent = AgentProcess(cfg, tmp_path / "agent1.log")
        try:
            wait_until(lambda: len(_documents(docs)) >= 6, 60, "documents",
                       diagnostics=agent.log_text)
            sim.stop()  # no more reads: the head settles
            wait_until(lambda: buffer_state(db)["outbox"] == 0, 30,
                       "every document PUBACKed (outbox empty)", diagnostics=agent.log_text)
            got = _documents(docs)
            last = max(got)
            want = {"seq": last, "hash": "sha-256:" + hashlib.sha256(got[last]).hexdigest(),
                    "chainId": json.loads(got[last])["tea:chainId"]}
            # Bound for correctness, not speed: the throttle is 1 s; only the refresh after
            # the head moved can have put this head there (the health period is 600 s).
            wait_until(lambda: _retained_status(mosquitto).get("chain") == want, 5,
                       f"the retained status naming head {want}",
                       diagnostics=lambda: json.dumps(_retained_status(mosquitto)))
            live = _retained_status(mosquitto)
            assert live["state"] == "online"
        finally:
            assert agent.stop() == 0, agent.log_text()
            sim.stop()
    offline = _retained_status(mosquitto)
    assert offline["state"] == "offline"
    assert offline["chain"] == want  # the final head, from the clean stop

    # Second run on the same buffer: the will registered at connect knows head `want`.
    sim = SimProcess("r2000", "--pty", "--tags", "4", "--read-rate", "20",
                     log_path=tmp_path / "sim2.log")
    doc = yaml.safe_load(cfg.read_text())
    doc["readers"][0]["port"] = sim.port
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    with collect(mosquitto, f"{BASE}/events") as docs:
        agent = AgentProcess(cfg, tmp_path / "agent2.log")
        try:
            wait_until(lambda: len([s for s in _documents(docs) if s > last]) >= 3, 60,
                       "documents of the second run", diagnostics=agent.log_text)
            wait_until(lambda: _retained_status(mosquitto).get("chain", {}).get("seq", 0)
                       > last, 5, "the retained status following the second run's head")
            agent.kill()  # SIGKILL: no DISCONNECT, the broker publishes the will
        finally:
            sim.stop()
            if agent.alive():
                agent.kill()
        wait_until(lambda: _retained_status(mosquitto)["state"] == "offline", 10,
                   "the will as the retained status", diagnostics=mosquitto.log_text)
        will = _retained_status(mosquitto)
        assert will["chainAtConnect"] == want, will
        assert "chain" not in will  # the will cannot know the head after connect

        # Third run: a reconnect (broker restart) registers a new will with the head known
        # then, later than the head at the first connect.
        sim = SimProcess("r2000", "--pty", "--tags", "4", "--read-rate", "20",
                         log_path=tmp_path / "sim3.log")
        doc["readers"][0]["port"] = sim.port
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            at_connect = chain_head(con)  # what the first connect's will carries
        finally:
            con.close()
        assert at_connect is not None
        agent = AgentProcess(cfg, tmp_path / "agent3.log")
        try:
            wait_until(lambda: max(_documents(docs)) >= at_connect.seq + 3, 60,
                       "documents of the third run", diagnostics=agent.log_text)
            # The will is refreshed with the head at most 1 s after it moves: past that, it
            # holds a head of this run, later than the one of the first connect.
            time.sleep(1.5)
            mosquitto.restart()
            wait_until(lambda: "(reconnect #1)" in agent.log_text(), 30, "the reconnect",
                       diagnostics=agent.log_text)
            agent.kill()
        finally:
            sim.stop()
            if agent.alive():
                agent.kill()
    wait_until(lambda: _retained_status(mosquitto)["state"] == "offline", 10,
               "the will of the reconnected session", diagnostics=mosquitto.log_text)
    head = _retained_status(mosquitto)["chainAtConnect"]
    assert head["seq"] >= at_connect.seq + 3, (head, at_connect)
    assert head["hash"] == "sha-256:" + hashlib.sha256(_documents(docs)[head["seq"]]).hexdigest()
