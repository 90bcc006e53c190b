"""End to end with real parts: reader-sim on a pseudo-terminal -> edge-agent (subprocess) ->
Mosquitto (process started by the test) -> a subscriber. Nothing mocked."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.harness import (
    EVENTS_TOPIC,
    AgentProcess,
    SimProcess,
    all_committed_delivered,
    buffer_state,
    durable_collector,
    events_of,
    read_ids,
    wait_until,
    write_config,
)
from tests.support.mosquitto import Collector, Mosquitto

# These tests prove per read that nothing committed is lost (tea:readId on every event), so they
# run the reader in `mode: every_read`; presence mode folds reads and is tested end to end in
# tests/test_e2e_presence.py.
EVERY_READ = {"mode": "every_read"}


def _all_delivered(collector: Collector, db: Path) -> bool:
    return all_committed_delivered(collector.messages, db)


def _assert_nothing_lost(collector: Collector, db: Path) -> int:
    state = buffer_state(db)
    delivered = read_ids(events_of(collector.messages))  # asserts duplicates share eventIDs
    generations = {rid.rsplit(":", 1)[0] for rid in delivered}
    assert len(generations) == 1, generations
    numbers = {int(rid.rsplit(":", 1)[1]) for rid in delivered}
    missing = set(range(1, state["last_read_id"] + 1)) - numbers
    assert not missing, f"{len(missing)} committed reads never delivered: {sorted(missing)[:20]}"
    return state["last_read_id"]


def test_simulated_reader_to_broker(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim = SimProcess("r2000", "--pty", "--tags", "5", "--seed", "7", log_path=tmp_path / "sim.log")
    db = tmp_path / "buffer.db"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto, buffer=db,
                       reader=EVERY_READ)
    with durable_collector(mosquitto, EVENTS_TOPIC, "e2e-basic") as collector:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            def five_epcs() -> bool:
                reads = [r for e in events_of(collector.messages) for r in e["tea:reads"]]
                return len({r["tea:epcHex"] for r in reads}) >= 5

            wait_until(five_epcs, 30, "five distinct EPCs", diagnostics=agent.log_text)
            time.sleep(0.5)
            events = events_of(collector.messages)
            reads = [r for e in events for r in e["tea:reads"]]
            epcs = {r["tea:epcHex"] for r in reads}
            assert len(epcs) == 5  # exactly the simulated population, nothing invented
            for e in events:
                assert e["type"] == "ObjectEvent"
                assert e["eventID"].startswith("ni:///sha-256;")
                assert len(e["epcList"]) == 1
                for r in e["tea:reads"]:
                    assert r["tea:reader"] == "r1"
                    assert r["tea:antenna"] == 1
                    assert -100.0 <= r["tea:rssiDbm"] <= -20.0
                    assert r["tea:readTime"].endswith("Z")
                    assert e["epcList"] == [f"urn:epc:raw:96.x{r['tea:epcHex']}"] or \
                        e["epcList"][0].startswith("urn:epc:id:sgtin:")
        finally:
            assert agent.stop() == 0, agent.log_text()
            sim.stop()
    log = agent.log_text()
    assert "Traceback" not in log
    assert "R2000 firmware" in log


def test_broker_outage_loses_nothing(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim = SimProcess("r2000", "--pty", "--tags", "3", "--seed", "3", log_path=tmp_path / "sim.log")
    db = tmp_path / "buffer.db"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto, buffer=db,
                       reader=EVERY_READ)
    with durable_collector(mosquitto, EVENTS_TOPIC, "e2e-outage") as collector:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            collector.wait_count(3, timeout_s=30)
            mosquitto.stop()  # the broker goes away mid-stream
            time.sleep(4)  # the agent keeps reading into the buffer meanwhile
            during = buffer_state(db)
            mosquitto.start()
            time.sleep(2)
            sim.stop()  # no new reads: everything committed must now drain
            wait_until(lambda: _all_delivered(collector, db), 60, "the backlog to drain",
                       diagnostics=agent.log_text)
            total = _assert_nothing_lost(collector, db)
            assert during["outbox"] + during["reads"] > 0, "nothing was buffered during the outage"
            assert total > 10
        finally:
            assert agent.stop() == 0, agent.log_text()
    assert "Traceback" not in agent.log_text()


def test_sigkill_loses_no_committed_read(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sim = SimProcess("r2000", "--pty", "--tags", "4", "--seed", "5", log_path=tmp_path / "sim.log")
    db = tmp_path / "buffer.db"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto, buffer=db,
                       reader=EVERY_READ)
    with durable_collector(mosquitto, EVENTS_TOPIC, "e2e-crash") as collector:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            collector.wait_count(5, timeout_s=30)
            for _ in range(3):
                time.sleep(0.7)
                agent.kill()  # SIGKILL: no cleanup at all
                agent.start()
            time.sleep(1.0)
            sim.stop()
            wait_until(lambda: _all_delivered(collector, db), 60, "the backlog to drain",
                       diagnostics=agent.log_text)
            _assert_nothing_lost(collector, db)
        finally:
            assert agent.stop() == 0, agent.log_text()


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_clean_shutdown_keeps_the_backlog(tmp_path: Path, mosquitto: Mosquitto,
                                          signame: str) -> None:
    import signal

    sim = SimProcess("r2000", "--pty", "--tags", "2", log_path=tmp_path / "sim.log")
    db = tmp_path / "buffer.db"
    mosquitto.stop()  # nothing can be delivered: everything stays buffered
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto, buffer=db,
                       reader=EVERY_READ)
    agent = AgentProcess(cfg, tmp_path / "agent.log")
    try:
        wait_until(lambda: buffer_state(db)["last_read_id"] > 20, 30, "reads to be buffered",
                   diagnostics=agent.log_text)
    finally:
        rc = agent.signal(getattr(signal, signame))
        sim.stop()
    assert rc == 0
    log = agent.log_text()
    assert "Traceback" not in log
    state = buffer_state(db)
    assert state["reads"] + state["outbox"] == state["last_read_id"]
