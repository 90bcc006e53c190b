"""End to end per driver: reader-sim on a pty -> edge-agent (subprocess) -> Mosquitto."""

from __future__ import annotations

import os
import re
import time
import tty
import urllib.request
from pathlib import Path

from readersim.barcode import DEFAULT_SCANS
from readersim.population import generated_tags

from tests.support.harness import (
    EVENTS_TOPIC,
    AgentProcess,
    SimProcess,
    durable_collector,
    events_of,
    metric,
    wait_until,
    write_config,
)
from tests.support.mosquitto import Mosquitto, free_port


def test_chafon_reader_to_broker(tmp_path: Path, mosquitto: Mosquitto) -> None:
    expected = {t.epc.hex().upper(): t.antenna
                for t in generated_tags(6, seed=21, antennas=(1, 2))}
    sim = SimProcess("chafon", "--pty", "--tags", "6", "--seed", "21", "--antennas", "1,2",
                     "--tag-antennas", "1,2", "--tags-per-frame", "2",
                     log_path=tmp_path / "sim.log")
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


def test_barcode_scans_become_epcis_events(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Every scan of the simulated scanner arrives at the broker as an ObjectEvent: GS1 keys
    as Digital Link identities (serialised item, SSCC) or class-level quantities (GTIN, lot),
    non-GS1 codes verbatim, and always the raw text with its AIM symbology identifier."""
    sim = SimProcess("barcode", "--pty", "--interval", "0.1", log_path=tmp_path / "sim.log")
    db = tmp_path / "buffer.db"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=db, reader={"name": "scanner-1", "driver": "barcode",
                                          "baudrate": 9600, "terminator": "CRLF"})
    with durable_collector(mosquitto, EVENTS_TOPIC, "e2e-barcode") as collector:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            def all_codes_seen() -> bool:
                texts = {r["tea:barcode"] for e in events_of(collector.messages)
                         for r in e["tea:reads"]}
                return len(texts) >= len(DEFAULT_SCANS)

            wait_until(all_codes_seen, 30, "an event for every code", diagnostics=agent.log_text)
        finally:
            assert agent.stop() == 0, agent.log_text()
            sim.stop()
    by_text = {e["tea:reads"][0]["tea:barcode"]: e for e in events_of(collector.messages)}
    for scan in DEFAULT_SCANS:
        event = by_text[scan.data.decode()]
        assert event["tea:reads"][0]["tea:symbology"] == scan.aim
        assert event["tea:reads"][0]["tea:reader"] == "scanner-1"
    dm = by_text["010950600013435217201231" + "10ABC123" + "\x1d" + "21SN0001"]
    assert dm["epcList"] == ["https://id.gs1.org/01/09506000134352/21/SN0001"]
    assert dm["tea:reads"][0]["tea:lotNumber"] == "ABC123"  # OBSERVE point: lot stays in tea
    assert by_text["00106141411234567897"]["epcList"] == [
        "https://id.gs1.org/00/106141411234567897"]
    assert by_text["9781492053743"]["quantityList"] == [
        {"epcClass": "https://id.gs1.org/01/09781492053743", "quantity": 1}]
    assert by_text["ABC-12345"]["epcList"] == []
    assert "Traceback" not in agent.log_text()


def test_a_burst_of_scans_is_formed_by_the_former_and_nothing_is_lost(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Issue 12: a busy line's batches of scans have their events formed in a child process
    (agent/pipeline/former.py). 6,000 lines written into a pty as fast as it takes them: every
    one arrives once, with dense read ids; the former was started and /metrics says what it
    did; SIGTERM stops the agent and its former cleanly."""
    master, slave = os.openpty()
    tty.setraw(slave)  # bytes as they are (no newline translation)
    total = 6000
    db = tmp_path / "buffer.db"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=os.ttyname(slave),
                       broker=mosquitto, buffer=db,
                       reader={"name": "line-scan", "driver": "barcode", "baudrate": 115200,
                               "terminator": "LF"},
                       extra={"http": {"listen": (http := f"127.0.0.1:{free_port()}")}})
    try:
        with durable_collector(mosquitto, EVENTS_TOPIC, "e2e-former") as collector:
            agent = AgentProcess(cfg, tmp_path / "agent.log")
            try:
                wait_until(lambda: "reader line-scan:" in agent.log_text(), 30,
                           "the scanner's port open", diagnostics=agent.log_text)
                time.sleep(0.5)

                def burst(first: int, last: int) -> None:
                    lines = b"".join(b"BURST%08d\n" % i for i in range(first, last))
                    for i in range(0, len(lines), 2048):
                        os.write(master, lines[i : i + 2048])  # blocks while the pty is full

                # The first busy batches start the former (formed on the loop meanwhile);
                # the second half arrives once it is ready and is formed there.
                burst(0, total // 2)
                wait_until(lambda: re.search(r"event former: process \d+ ready",
                                             agent.log_text()) is not None, 30,
                           "the former ready", diagnostics=agent.log_text)
                burst(total // 2, total)

                def texts() -> list[str]:
                    return [r["tea:barcode"] for e in events_of(collector.messages)
                            for r in e["tea:reads"]]

                wait_until(lambda: len(set(texts())) >= total, 60, "every line's event",
                           diagnostics=agent.log_text)
                time.sleep(0.3)
                got = texts()
                assert sorted(set(got)) == [f"BURST{i:08d}" for i in range(total)]
                ids = sorted(int(r["tea:readId"].rsplit(":", 1)[1])
                             for e in events_of(collector.messages) for r in e["tea:reads"])
                assert ids == list(range(ids[0], ids[0] + total))  # dense: none skipped
                match = re.search(r"event former: process (\d+) ready", agent.log_text())
                assert match, agent.log_text()
                former_pid = int(match.group(1))
                os.kill(former_pid, 0)  # alive while the agent runs
                with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as resp:
                    metrics = resp.read().decode()
                assert metric(metrics, "edge_agent_former_running") == 1
                assert metric(metrics, "edge_agent_former_starts_total") == 1
                assert metric(metrics, "edge_agent_former_batches_total") > 0
                assert 0 < metric(metrics, "edge_agent_former_events_total") <= total
                assert metric(metrics, "edge_agent_former_failures_total") == 0
            finally:
                assert agent.stop() == 0, agent.log_text()
    finally:
        os.close(master)
        os.close(slave)
    log = agent.log_text()
    assert "Traceback" not in log
    assert "formed on the event loop (nothing lost)" not in log  # the former never failed
    deadline = time.monotonic() + 5
    while True:  # the former goes with the agent
        try:
            os.kill(former_pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the former outlived the agent"
        time.sleep(0.05)
