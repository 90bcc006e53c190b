"""End to end in presence mode: reader-sim scenario (tags enter and leave antenna fields) ->
edge-agent -> Mosquitto -> subscriber sees the expected arrival/departure sequence per door."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import pytest
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
from tests.support.pipeline_helpers import schema_errors

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("readersim") is None
    or importlib.util.find_spec("readersim.scenario") is None,
    reason="reader-sim without --scenario support (readersim.scenario) is not on this branch "
           "yet; it is being finished on the sim branch",
)

DOOR_A = "urn:epc:id:sgln:0614141.00777.1"
DOOR_B = "urn:epc:id:sgln:0614141.00777.2"

SCENARIO: dict[str, Any] = {
    "device": "r2000",
    "tags": [
        # pallet A: 4 tags at door A (antenna 1) from 1 s to 5 s
        {"group": "pallet-a", "count": 4, "company_prefix": "0614141",
         "item_reference": "812345", "first_serial": 1, "antenna": 1, "enter_s": 1,
         "leave_s": 5, "rssi_dbm": -55},
        # pallet B: 3 tags at door B (antenna 3) from 2 s to 7 s
        {"group": "pallet-b", "count": 3, "company_prefix": "0614141",
         "item_reference": "812345", "first_serial": 101, "antenna": 3, "enter_s": 2,
         "leave_s": 7, "rssi_dbm": -60},
    ],
}

READER: dict[str, Any] = {
    "mode": "presence",
    "antennas": [1, 2, 3, 4],
    "biz_location": "urn:epc:id:sgln:0614141.00777.0",
    "presence": {"window_s": 0.5, "depart_after_s": 2.0},
    "antenna_map": {
        1: {"read_point": DOOR_A, "biz_step": "receiving", "disposition": "in_progress"},
        3: {"read_point": DOOR_B, "biz_step": "shipping", "disposition": "in_transit",
            "on_depart": {"biz_step": "departing"}},
    },
}


@pytest.mark.slow
def test_scenario_gives_arrivals_then_departures_per_door(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    scenario = tmp_path / "dock.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO, sort_keys=False))
    sim = SimProcess("r2000", "--pty", "--scenario", str(scenario), log_path=tmp_path / "sim.log")
    db = tmp_path / "buffer.db"
    cfg = write_config(tmp_path / "agent.yaml", reader_port=sim.port, broker=mosquitto,
                       buffer=db, reader=READER)
    with durable_collector(mosquitto, EVENTS_TOPIC, "e2e-presence") as collector:
        agent = AgentProcess(cfg, tmp_path / "agent.log")
        try:
            def both_departed() -> bool:
                n = sum(e.get("tea:transition") == "departed"
                        for e in events_of(collector.messages))
                return bool(n >= 2)

            wait_until(both_departed, 40, "both pallets to depart", diagnostics=agent.log_text)
            time.sleep(1.0)
        finally:
            assert agent.stop() == 0, agent.log_text()
            sim.stop()
    events = events_of(collector.messages)
    unique = {e["eventID"]: e for e in events}  # at-least-once: duplicates share the eventID
    seq = [(e["tea:transition"], e["readPoint"]["id"], frozenset(e["epcList"]))
           for e in sorted(unique.values(), key=lambda e: e["eventTime"])]
    pallet_a = frozenset(f"urn:epc:id:sgtin:0614141.812345.{n}" for n in range(1, 5))
    pallet_b = frozenset(f"urn:epc:id:sgtin:0614141.812345.{n}" for n in range(101, 104))
    assert sorted(seq, key=lambda x: (x[1], x[0] != "arrived")) == [
        ("arrived", DOOR_A, pallet_a), ("departed", DOOR_A, pallet_a),
        ("arrived", DOOR_B, pallet_b), ("departed", DOOR_B, pallet_b),
    ], seq
    by = {(t, rp): e for e in unique.values()
          for t, rp in [(e["tea:transition"], e["readPoint"]["id"])]}
    assert by[("arrived", DOOR_A)]["bizStep"] == "receiving"
    assert by[("departed", DOOR_B)]["bizStep"] == "departing"
    for e in unique.values():
        for r in e["tea:reads"]:
            assert r["tea:count"] >= 1
            assert r["tea:firstSeen"] <= r["tea:lastSeen"]
        doc = {"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
                            {"tea": "https://ns.trace-edge-agent.org/epcis/1#"}],
               "type": "EPCISDocument", "schemaVersion": "2.0",
               "creationDate": "2027-01-01T00:00:00.000Z", "epcisBody": {"eventList": [e]}}
        assert not schema_errors(doc)
    assert "Traceback" not in agent.log_text()
