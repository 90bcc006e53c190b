"""End to end: reader-sim hid (keyboard-wedge scanner, German layout) -> FIFO -> edge-agent
(subprocess) -> Mosquitto. A GS1-128 element string typed with Ctrl+] for GS becomes the same
EPCIS event a serial scanner's scan of that code becomes."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.harness import (
    EVENTS_TOPIC,
    AgentProcess,
    SimProcess,
    durable_collector,
    events_of,
    wait_until,
    write_config,
)
from tests.support.mosquitto import Mosquitto

GS1 = "010950600013435210ABC123\x1d17261231"  # (01) GTIN (10) lot <GS> (17) expiry
SSCC = "00106141411234567897"


def test_hid_scans_become_epcis_events(tmp_path: Path, mosquitto: Mosquitto) -> None:
    fifo = tmp_path / "scanner-kbd"
    sim = SimProcess("hid", "--out", str(fifo), "--fifo", "--keymap", "de", "--every-s", "0.1",
                     "--scan", "]C1" + GS1.replace("\x1d", "<GS>"), "--scan", "]C1" + SSCC,
                     "--scan", "]C0Zy-Qwertz", log_path=tmp_path / "sim.log")
    db = tmp_path / "buffer.db"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=db, reader={"name": "scan1", "driver": "hid", "keymap": "de"})
    doc = yaml.safe_load(cfg.read_text())
    del doc["readers"][0]["baudrate"]  # the harness's serial default; not a hid option
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    with durable_collector(mosquitto, EVENTS_TOPIC, "e2e-hid") as collector:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            def all_codes_seen() -> bool:
                texts = {r["tea:barcode"] for e in events_of(collector.messages)
                         for r in e["tea:reads"]}
                return texts >= {GS1, SSCC, "Zy-Qwertz"}

            wait_until(all_codes_seen, 30, "an event for every code", diagnostics=agent.log_text)
        finally:
            assert agent.stop() == 0, agent.log_text()
            sim.stop()
    by_text = {e["tea:reads"][0]["tea:barcode"]: e for e in events_of(collector.messages)}
    assert set(by_text) == {GS1, SSCC, "Zy-Qwertz"}  # nothing mistyped on the way
    gs1 = by_text[GS1]
    assert gs1["type"] == "ObjectEvent"
    assert gs1["tea:reads"][0]["tea:symbology"] == "]C1"
    assert gs1["tea:reads"][0]["tea:reader"] == "scan1"
    assert "epcList" not in gs1  # class level: a lot, no serial
    assert gs1["quantityList"] == [
        {"epcClass": "https://id.gs1.org/01/09506000134352/10/ABC123", "quantity": 1}]
    assert gs1["tea:reads"][0]["tea:lotNumber"] == "ABC123"  # OBSERVE point: lot stays in tea
    assert by_text[SSCC]["epcList"] == ["https://id.gs1.org/00/106141411234567897"]
    log = agent.log_text()
    assert "Traceback" not in log
    assert "reader scan1: keyboard-wedge scanner: keymap de, terminator enter" in log
