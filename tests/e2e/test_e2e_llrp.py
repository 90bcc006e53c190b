"""End to end for a fixed LLRP reader (issue 11): reader-sim llrp over TCP -> edge-agent
(subprocess) -> Mosquitto, with the right reader, antenna, RSSI and EPC; a dropped connection
costs no committed read."""

from __future__ import annotations

from pathlib import Path

import yaml
from readersim.population import generated_tags

from tests.support.harness import (
    EVENTS_TOPIC,
    AgentProcess,
    SimProcess,
    all_committed_delivered,
    durable_collector,
    events_of,
    wait_until,
    write_config,
)
from tests.support.mosquitto import Mosquitto


def test_llrp_reader_to_broker(tmp_path: Path, mosquitto: Mosquitto) -> None:
    expected = {t.epc.hex().upper(): t.antenna
                for t in generated_tags(6, seed=5, antennas=(1, 2))}
    sim = SimProcess("llrp", "--tcp", "127.0.0.1:0", "--tags", "6", "--seed", "5",
                     "--tag-antennas", "1,2",
                     "--drop-after", "2.0", log_path=tmp_path / "sim.log")
    host, port = sim.host_port
    db = tmp_path / "buffer.db"
    path = write_config(tmp_path / "agent.yaml", reader_port="unused", broker=mosquitto,
                        buffer=db, reader={"name": "dock-fx", "driver": "llrp"})
    cfg = yaml.safe_load(path.read_text())
    reader = cfg["readers"][0]
    reader.pop("baudrate")
    reader.update(host=host, port=port, antennas=[1, 2], keepalive_s=1)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with durable_collector(mosquitto, EVENTS_TOPIC, "e2e-llrp") as collector:
        agent = AgentProcess(path, tmp_path / "agent.log")
        try:
            def all_epcs_and_a_reconnect() -> bool:
                reads = [r for e in events_of(collector.messages) for r in e["tea:reads"]]
                return ({r["tea:epcHex"] for r in reads} >= set(expected)
                        and "reconnecting" in agent.log_text())

            wait_until(all_epcs_and_a_reconnect, 30, "every EPC and one dropped connection",
                       diagnostics=agent.log_text)
            sim.stop()  # no new reads: everything committed must now reach the broker
            wait_until(lambda: all_committed_delivered(collector.messages, db), 20,
                       "every committed read delivered", diagnostics=agent.log_text)
        finally:
            assert agent.stop() == 0, agent.log_text()
            sim.stop()
    reads = [r for e in events_of(collector.messages) for r in e["tea:reads"]]
    assert {r["tea:epcHex"] for r in reads} == set(expected)  # nothing invented
    for r in reads:
        assert r["tea:reader"] == "dock-fx"
        assert r["tea:antenna"] == expected[r["tea:epcHex"]]
        assert -100 < r["tea:rssiDbm"] < 0
    log = agent.log_text()
    assert "Traceback" not in log
    assert "reader dock-fx: LLRP reader" in log
