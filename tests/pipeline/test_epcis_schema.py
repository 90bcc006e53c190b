"""Every kind of event the agent produces validates against the official EPCIS 2.0 JSON Schema.

The schema and GS1's example documents live outside the repo, in ../shared/data/epcis (from the
repo root); these tests skip where it is absent. Draft7Validator with FORMAT_CHECKER, and
rfc3986-validator installed, so ``format: uri`` is really checked.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from agent.config.vocab import BIZ_STEPS, DISPOSITIONS
from agent.model import BarcodeRead
from agent.pipeline.barcode_events import barcode_event
from agent.pipeline.epcis import (
    ARRIVED,
    DEPARTED,
    HASH_CONTEXT,
    PRESENT,
    document,
    every_read_event,
    presence_event,
)
from agent.pipeline.eventhash import event_hash
from agent.pipeline.mapping import EventMapping
from agent.pipeline.presence import PresenceEngine
from tests.support.pipeline_helpers import (
    DOOR_A,
    T0,
    dock_plan,
    read,
    schema_errors,
    schema_path,
    sgtin_hex,
)

MAPPING = EventMapping(read_point=DOOR_A, biz_location="urn:epc:id:sgln:0614141.00777.0",
                       biz_step="receiving", disposition="in_progress",
                       depart_biz_step="departing", depart_disposition="in_transit")
RAW_EPC = "E2801160600002080000ABCD"  # factory-default TID-style EPC: not decodable


def doc(*events: dict[str, Any]) -> dict[str, Any]:
    # round-trip through JSON as the forwarder does
    out: dict[str, Any] = json.loads(
        json.dumps(document(events, created=datetime(2027, 1, 1, tzinfo=UTC))))
    return out


def assert_valid(d: dict[str, Any]) -> None:
    errors = schema_errors(d)
    assert not errors, errors


@pytest.mark.parametrize("name", ["Example_9.6.1-ObjectEvent.jsonld",
                                  "Example_9.6.3-AggregationEvent.jsonld",
                                  "SensorDataExample1.jsonld"])
def test_official_examples_validate(name: str) -> None:
    path = schema_path() / name
    if not path.exists():
        pytest.skip(f"{path} missing")
    assert_valid(json.loads(path.read_text()))


def test_the_validator_rejects_what_it_should() -> None:
    e = every_read_event(read(T0, sgtin_hex(1)), timezone="+08:00", mapping=MAPPING,
                         source_id="g:1")
    bad = dict(e, action="observe")
    assert schema_errors(doc(bad))
    assert schema_errors(doc(dict(e, readPoint={"id": "not a uri"})))
    assert schema_errors(doc({k: v for k, v in e.items() if k != "eventTimeZoneOffset"}))


def test_vocabulary_lists_match_the_schema_enums() -> None:
    schema = json.loads((schema_path() / "EPCIS-JSON-Schema.json").read_text())
    defs = schema["definitions"]

    def enum(name: str) -> set[str]:
        return {w for alt in defs[name]["anyOf"] for w in alt.get("enum", [])}

    assert enum("bizStep") == BIZ_STEPS
    assert enum("disposition") == DISPOSITIONS


def presence_events() -> dict[str, dict[str, Any]]:
    eng = PresenceEngine(lambda name: dock_plan(window_s=1.0, depart_after_s=5.0,
                                                heartbeat_s=10.0))
    out: dict[str, dict[str, Any]] = {}
    for i in range(40):
        t = T0 + i * 0.5
        eng.fold(read(t, sgtin_hex(1), synced=i > 3))
        eng.fold(read(t, RAW_EPC, rssi=None))
        for tr in eng.advance(t):
            out.setdefault(tr.kind, presence_event(tr.kind, tr.tags, timezone="+08:00",
                                                   mapping=tr.mapping, at=tr.at))
    for t in (T0 + 40, T0 + 42):
        for tr in eng.advance(t):
            out.setdefault(tr.kind, presence_event(tr.kind, tr.tags, timezone="+08:00",
                                                   mapping=tr.mapping, at=tr.at))
    return out


def test_presence_events_validate() -> None:
    events = presence_events()
    assert set(events) == {ARRIVED, PRESENT, DEPARTED}
    arrival = events[ARRIVED]
    assert set(arrival["epcList"]) == {"urn:epc:id:sgtin:0614141.812345.1",
                                       f"urn:epc:raw:96.x{RAW_EPC}"}
    reads = {r["tea:epcHex"]: r for r in arrival["tea:reads"]}
    assert reads[sgtin_hex(1)]["tea:clockSynced"] is False  # read before NTP sync
    assert reads[sgtin_hex(1)]["tea:count"] >= 2
    assert "tea:rawReason" in reads[RAW_EPC]
    assert events[DEPARTED]["bizStep"] == "storing"  # dock_plan on_depart
    assert "bizStep" not in events[PRESENT]
    for e in events.values():
        assert_valid(doc(e))
        assert e["eventID"] == event_hash(e, HASH_CONTEXT)


def test_every_read_events_validate() -> None:
    for epc in (sgtin_hex(5), RAW_EPC):
        e = every_read_event(read(T0, epc), timezone="-05:00", mapping=MAPPING, source_id="g:9")
        assert_valid(doc(e))
    e = every_read_event(read(T0, sgtin_hex(5)), timezone="+00:00", mapping=EventMapping(),
                         source_id="g:1")
    assert_valid(doc(e))  # no business context configured at all
    extra = (("tea:readerClockOffsetS", -3600.25), ("tea:rfPhaseRad", 1.5708),
             ("tea:dopplerHz", -2.5), ("tea:reader", "not this"))
    e = every_read_event(replace(read(T0, sgtin_hex(5)), extra=extra), timezone="+00:00",
                         mapping=MAPPING, source_id="g:2")
    assert_valid(doc(e))
    (detail,) = e["tea:reads"]
    assert detail["tea:readerClockOffsetS"] == -3600.25
    assert (detail["tea:rfPhaseRad"], detail["tea:dopplerHz"]) == (1.5708, -2.5)
    assert detail["tea:reader"] == read(T0, sgtin_hex(5)).reader  # a driver cannot override


def scan(data: bytes, symbology: str | None) -> BarcodeRead:
    return BarcodeRead(reader="scan", data=data, symbology=symbology,
                       read_at=datetime.fromtimestamp(T0, UTC), clock_synced=False)


@pytest.mark.parametrize(
    ("data", "symbology", "key", "expected"),
    [
        (b"0180614141123458216789\x1d10LOT42\x1d17261231", "]d2", "epcList",
         ["https://id.gs1.org/01/80614141123458/21/6789"]),
        (b"00106141412345678908", "]C1", "epcList",
         ["https://id.gs1.org/00/106141412345678908"]),
        (b"0109506000134352" + b"10L/OT\x1d17251200", "]d2", "quantityList",
         [{"epcClass": "https://id.gs1.org/01/09506000134352/10/L%2FOT", "quantity": 1}]),
        (b"6901234567892", None, "quantityList",
         [{"epcClass": "https://id.gs1.org/01/06901234567892", "quantity": 1}]),
        (b"https://id.gs1.org/01/09506000134352/21/SN1?17=261231", None, "epcList",
         ["https://id.gs1.org/01/09506000134352/21/SN1"]),
        (b"ABC-123", "]C0", "epcList", []),
    ],
)
def test_barcode_events_validate(data: bytes, symbology: str | None, key: str,
                                 expected: Any) -> None:
    e = barcode_event(scan(data, symbology), timezone="+08:00", mapping=MAPPING,
                      source_id="g:3")
    assert e[key] == expected
    assert e["tea:reads"][0]["tea:clockSynced"] is False
    assert_valid(doc(e))
    if b"\x1d10" in data:
        assert "ilmd" not in e  # OBSERVE: the schema allows no ILMD
        assert e["tea:reads"][0]["tea:lotNumber"] in ("LOT42", "L/OT")
        add = barcode_event(scan(data, symbology), timezone="+08:00",
                            mapping=replace(MAPPING, action="ADD", biz_step="commissioning",
                                            disposition="active"), source_id="g:3")
        assert add["ilmd"]["cbvmda:lotNumber"] in ("LOT42", "L/OT")
        assert add["ilmd"]["cbvmda:itemExpirationDate"] in ("2026-12-31", "2025-12-31")
        assert_valid(doc(add))


def test_same_event_same_id() -> None:
    a = every_read_event(read(T0, sgtin_hex(5)), timezone="+08:00", mapping=MAPPING,
                         source_id="g:1")
    b = every_read_event(read(T0, sgtin_hex(5)), timezone="+08:00", mapping=MAPPING,
                         source_id="g:1")
    c = every_read_event(read(T0, sgtin_hex(5)), timezone="+08:00", mapping=MAPPING,
                         source_id="g:2")
    assert a == b
    assert a["eventID"] == b["eventID"] != c["eventID"]  # tea:readId is hashed, as {ns}readId
