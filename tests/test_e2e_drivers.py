"""End to end per driver: reader-sim on a pty -> edge-agent (subprocess) -> Mosquitto."""

from __future__ import annotations

import re
import time
from pathlib import Path

from readersim.barcode import DEFAULT_SCANS
from readersim.population import generated_tags

from tests.harness import (
    EVENTS_TOPIC,
    AgentProcess,
    SimProcess,
    buffer_state,
    durable_collector,
    events_of,
    wait_until,
    write_config,
)
from tests.mosquitto import Mosquitto


def test_chafon_reader_to_broker(tmp_path: Path, mosquitto: Mosquitto) -> None:
    expected = {t.epc.hex().upper(): t.antenna
                for t in generated_tags(6, seed=21, antennas=(1, 2))}
    sim = SimProcess(["chafon", "--pty", "--tags", "6", "--seed", "21", "--antennas", "1,2",
                      "--tag-antennas", "1,2", "--tags-per-frame", "2"], tmp_path / "sim.log")
    db = tmp_path / "buffer.db"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=db, reader={"name": "line-rfid", "driver": "chafon",
                                          "baudrate": 57600, "antennas": [1, 2],
                                          "scan_time_ms": 500})
    with durable_collector(mosquitto, EVENTS_TOPIC, "e2e-chafon") as collector:
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
                assert r["tea:reader"] == "line-rfid"
                assert r["tea:antenna"] == expected[r["tea:epcHex"]]
        finally:
            assert agent.stop() == 0, agent.log_text()
            sim.stop()
    log = agent.log_text()
    assert "Traceback" not in log
    assert "reader line-rfid: UHFReader288M firmware 0.22" in log


def test_barcode_scans_are_accepted_into_the_buffer(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Until the pipeline maps barcodes to EPCIS events (agent/pipeline/barcode_events.py, in
    progress elsewhere) no event carries them: this checks the agent side up to the buffer --
    the scan's raw bytes (AIM split, GS kept) reached the reader task and were committed."""
    sim = SimProcess(["barcode", "--pty", "--interval", "0.1"], tmp_path / "sim.log")
    db = tmp_path / "buffer.db"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=db, reader={"name": "scanner-1", "driver": "barcode",
                                          "baudrate": 9600, "terminator": "CRLF"})
    agent = AgentProcess(cfg, tmp_path / "agent.log")
    try:
        wait_until(lambda: buffer_state(db)["last_read_id"] >= 2 * len(DEFAULT_SCANS), 30,
                   "scans committed to the buffer", diagnostics=agent.log_text)
    finally:
        assert agent.stop() == 0, agent.log_text()
        sim.stop()
    log = agent.log_text()
    assert "Traceback" not in log
    logged = set(re.findall(r"reader scanner-1: scan (\S+) (b'.*')$", log, re.MULTILINE))
    for scan in DEFAULT_SCANS:
        assert (scan.aim, repr(scan.data)) in logged, (scan, logged)
