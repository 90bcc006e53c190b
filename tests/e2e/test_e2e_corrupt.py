"""A corrupt buffer at start, end to end: the agent quarantines the file, salvages the readable
rows into a fresh buffer, raises an alarm on .../alarms, and delivers what was salvaged."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support.harness import (
    AgentProcess,
    SimProcess,
    buffer_state,
    durable_collector,
    events_of,
    wait_until,
    write_config,
)
from tests.support.mosquitto import Mosquitto


def test_corrupt_buffer_is_quarantined_salvaged_alarmed_and_delivered(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    db = tmp_path / "buffer.db"
    sim = SimProcess("r2000", "--pty", "--tags", "6", "--saturate", log_path=tmp_path / "sim.log")
    mosquitto.stop()  # nothing leaves: the outbox fills
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=db)
    agent = AgentProcess(cfg, tmp_path / "agent.log")
    try:
        wait_until(lambda: buffer_state(db)["outbox"] > 3000, 60, "a backlog",
                   diagnostics=agent.log_text)
    finally:
        assert agent.stop() == 0, agent.log_text()
        sim.stop()
    backlog = buffer_state(db)["outbox"]

    # Damage the middle of the file (a failing SD card sector).
    size = db.stat().st_size
    with db.open("r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(8192))

    mosquitto.start()
    with durable_collector(mosquitto, "trace/lab/gw-test/#", "e2e-corrupt") as seen:
        agent.start()
        try:
            (alarm_msg,) = seen.wait_for(lambda m: m.topic.endswith("/alarms"), 30)
            alarm = json.loads(alarm_msg.payload)
            assert alarm["type"] == "buffer_corrupt"
            assert Path(alarm["quarantined_as"]).exists()
            salvaged = alarm["salvaged_total"]
            assert salvaged > backlog // 2, (salvaged, backlog)
            wait_until(lambda: buffer_state(db)["outbox"] == 0, 60, "the salvaged backlog",
                       diagnostics=agent.log_text)
        finally:
            assert agent.stop() == 0, agent.log_text()
    delivered = events_of(seen.messages)
    assert len({e["eventID"] for e in delivered}) >= alarm["salvaged_rows"].get("outbox", 0)
    log = agent.log_text()
    assert "Traceback" not in log
    assert "corrupt" in log
