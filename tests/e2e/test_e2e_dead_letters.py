"""Dead letters end to end (issue 13 item 2): a broker ACL refuses the events topic, refusals
become dead letters up to the cap, then (policy keep) stay in the outbox; an alarm goes out
and /health says why; after the ACL is fixed, `edge-agent buffer dead-letters replay --all`
puts them back and every one reaches the subscriber with its original eventID."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.harness import (
    AgentProcess,
    SimProcess,
    agent_cli,
    agent_status,
    durable_collector,
    wait_until,
    write_config,
)
from tests.support.mosquitto import Collector, Mosquitto

BASE = "trace/lab/gw-test"


def _event_ids(sub: Collector) -> set[str]:
    docs = [json.loads(m.payload) for m in sub.messages if m.topic.endswith("/events")]
    return {e["eventID"] for d in docs for e in d["epcisBody"]["eventList"]}


def _alarms(sub: Collector) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in sub.messages if m.topic.endswith("/alarms")]


def test_dead_letters_cap_alarm_and_replay_after_the_acl_is_fixed(
        tmp_path: Path, mosquitto_factory: Any) -> None:
    edge = ["user edge", f"topic write {BASE}/status", f"topic write {BASE}/health",
            f"topic write {BASE}/alarms"]
    reader = ["user sub", "topic read #"]
    refusing = [*edge, *reader]
    broker: Mosquitto = mosquitto_factory(users={"edge": "pw", "sub": "pw"}, acl=refusing)
    (tmp_path / "pw").write_text("pw\n")
    (tmp_path / "pw").chmod(0o600)
    with durable_collector(broker, f"{BASE}/#", "dl-sub", username="sub",
                           password="pw") as sub:
        _run(tmp_path, broker, sub, edge, reader)


def _run(tmp_path: Path, broker: Mosquitto, sub: Collector, edge: list[str],
         reader: list[str]) -> None:
    sim = SimProcess("r2000", "--pty", "--tags", "3", "--read-rate", "20",
                     log_path=tmp_path / "sim.log")
    sock = tmp_path / "agent.sock"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=broker,
                       buffer=tmp_path / "buffer.db",
                       mqtt={"username": "edge", "password_file": str(tmp_path / "pw"),
                             "batch_max_events": 1},
                       buffer_extra={"dead_letters_max": 5, "dead_letter_policy": "keep",
                                     "lease_s": 2},
                       extra={"status": {"socket": str(sock)}})
    agent = AgentProcess(cfg, tmp_path / "agent.log")
    try:
        wait_until(lambda: sock.exists() and agent_status(cfg)["buffer"]["deadLettersHeld"] > 0, 60,
                   "dead letters at the cap, further refusals held", diagnostics=agent.log_text)
        snap = agent_status(cfg)
        assert snap["buffer"]["deadLetters"] == 5  # the cap holds: nothing deleted
        assert snap["buffer"]["deadLettersFull"] is True
        assert any("dead letters at their cap of 5" in r for r in snap["health"]["reasons"])
        assert snap["buffer"]["dropped"] == 0
        wait_until(lambda: any(a.get("type") == "dead_letters_full" for a in _alarms(sub)), 30,
                   "the dead_letters_full alarm")

        listed = agent_cli("buffer", "dead-letters", "list", "--json", "-c", str(cfg))
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert len(rows) == 5
        assert all("Not authorized" in r["reason"] for r in rows)
        dead_ids = {eid for r in rows for eid in r["event_ids"]}
        assert len(dead_ids) == 5
        shown = agent_cli("buffer", "dead-letters", "show", str(rows[0]["id"]), "-c", str(cfg))
        assert shown.returncode == 0, shown.stderr
        assert rows[0]["event_ids"][0] in json.loads(shown.stdout)["payload"]

        broker.acl = [*edge, f"topic write {BASE}/events", *reader]  # the fix
        broker.stop()
        broker.start()
        replay = agent_cli("buffer", "dead-letters", "replay", "--all", "-c", str(cfg))
        assert replay.returncode == 0, replay.stderr
        assert "replayed 5 dead letters" in replay.stdout
        wait_until(lambda: _event_ids(sub) >= dead_ids, 60,
                   "every replayed dead letter at the subscriber", diagnostics=agent.log_text)
        wait_until(lambda: agent_status(cfg)["buffer"]["deadLetters"] == 0
                   and agent_status(cfg)["buffer"]["depth"] < 5, 60, "the held refusals delivered",
                   diagnostics=agent.log_text)
        assert agent_status(cfg)["buffer"]["deadLettersFull"] is False
    finally:
        assert agent.stop() == 0, agent.log_text()
        sim.stop()
    # purge: refuses without a terminal or --yes, then deletes with --yes
    no = agent_cli("buffer", "dead-letters", "purge", "-c", str(cfg), stdin="y\n")
    assert no.returncode == 1
    assert "pass --yes" in no.stderr
    yes = agent_cli("buffer", "dead-letters", "purge", "--yes", "-c", str(cfg))
    assert yes.returncode == 0, yes.stderr
    assert "purged 0 dead letters" in yes.stdout
    assert "Traceback" not in agent.log_text()
