"""Issue 5: the real agent, fed by reader-sim on a saturated line, is killed with SIGKILL at
random moments many times (commits, WAL checkpoints, ack deletes and space reuse all happen
continuously at this rate). After each kill the file passes integrity_check; at the end every
committed read has been delivered, duplicates only with identical eventIDs."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
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
from tests.support.mosquitto import Mosquitto

KILLS = 12


def _integrity(db: Path) -> str:
    con = sqlite3.connect(db, timeout=10)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


def _reads_after(db: Path, last_read_id: int) -> Callable[[], bool]:
    return lambda: buffer_state(db)["last_read_id"] > last_read_id


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, mosquitto: Mosquitto) -> None:
    rng = random.Random(20261128)
    sim = SimProcess("r2000", "--pty", "--tags", "8", "--saturate", "--seed", "11",
                     log_path=tmp_path / "sim.log")
    db = tmp_path / "buffer.db"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto, buffer=db,
                       mqtt={"batch_max_events": 50})
    with durable_collector(mosquitto, EVENTS_TOPIC, "crash-loop") as collector:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            collector.wait_count(1, timeout_s=30)
            for _ in range(KILLS):
                # Each run reads before it is killed (a start takes about a second, more than
                # many of the random intervals: on a slow machine most runs died before their
                # reader was up, and the line was not busy at the kills).
                wait_until(_reads_after(db, buffer_state(db)["last_read_id"]), 30,
                           "the restarted agent to commit reads", diagnostics=agent.log_text)
                time.sleep(rng.uniform(0.05, 1.0))
                agent.kill()
                assert _integrity(db) == "ok"
                agent.start()
            time.sleep(1.0)
            sim.stop()

            wait_until(lambda: all_committed_delivered(collector.messages, db), 90,
                       "every committed read to be delivered",
                       diagnostics=agent.log_text)
            state = buffer_state(db)
            delivered = read_ids(events_of(collector.messages))  # duplicates share eventIDs
            assert len({r.rsplit(":", 1)[0] for r in delivered}) == 1  # one buffer generation
            assert state["last_read_id"] > 500, "the line was not busy enough to mean much"
        finally:
            assert agent.stop() == 0, agent.log_text()
    assert _integrity(db) == "ok"
    assert "Traceback" not in agent.log_text()
