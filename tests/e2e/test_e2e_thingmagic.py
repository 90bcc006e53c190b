"""End to end: reader-sim thingmagic on a pty -> edge-agent (subprocess) -> Mosquitto."""

from __future__ import annotations

import time
from pathlib import Path

from readersim.population import generated_tags

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
    assert "the module was still streaming" in log
    assert "reader nano: ThingMagic M6e Nano firmware 01.09.00.02" in log
