"""A full disk, end to end: the buffer lives on a 4 MiB tmpfs, the broker is down and a reader
saturates its line. The agent keeps running, says DISK FULL once, pauses the reader instead of
dropping accepted reads, and resumes by itself when the broker drains the backlog and frees
space. Every committed read is delivered."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import (
    EVENTS_TOPIC,
    AgentProcess,
    SimProcess,
    all_committed_delivered,
    buffer_state,
    durable_collector,
    wait_until,
    write_config,
)
from tests.support.mosquitto import Mosquitto


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) for a tmpfs of its own")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                         capture_output=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.slow
def test_disk_full_pauses_then_resumes_and_loses_nothing(
    tmp_path: Path, small_fs: Path, mosquitto: Mosquitto
) -> None:
    db = small_fs / "buffer.db"
    sim = SimProcess("r2000", "--pty", "--tags", "6", "--saturate", log_path=tmp_path / "sim.log")
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=db, buffer_extra={"reserve_bytes": "512KiB"},
                       extra={"status": {"socket": str(tmp_path / "agent.sock")},
                              "http": {"enabled": False}})
    # The subscriber's session exists before the outage, so it gets everything afterwards.
    with durable_collector(mosquitto, EVENTS_TOPIC, "e2e-disk-full") as collector:
        mosquitto.stop()
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            wait_until(lambda: "DISK FULL" in agent.log_text(), 90, "the disk to fill",
                       diagnostics=agent.log_text)
            time.sleep(2)
            assert agent.alive(), agent.log_text()
            at_full = buffer_state(db)["last_read_id"]
            mosquitto.start()
            # The backlog drains, space is reused, reading resumes past the old high mark.
            wait_until(lambda: buffer_state(db)["last_read_id"] > at_full + 1000, 90,
                       "reads to resume after the disk full", diagnostics=agent.log_text)
            sim.stop()

            wait_until(lambda: all_committed_delivered(collector.messages, db), 90,
                       "every committed read to be delivered",
                       diagnostics=agent.log_text)
        finally:
            assert agent.stop() == 0, agent.log_text()
    log = agent.log_text()
    assert "DISK FULL" in log
    assert "released the" in log  # the space reserve let the backlog drain
    assert "disk space is back" in log
    assert "Traceback" not in log
