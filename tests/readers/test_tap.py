"""The live-view tap: free with no viewer, bounded per viewer, drops (and counts) for slow ones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.buffer.api import OutEvent
from agent.fieldtools import tap as tap_mod
from agent.fieldtools.tap import EventTap
from agent.model import BarcodeRead, TagRead

SGTIN = "3074257BF7194E4000001A85"  # TDS example: urn:epc:id:sgtin:0614141.812345.6789


def _read(reader: str = "r1", epc: str = SGTIN) -> TagRead:
    return TagRead(reader=reader, epc=epc, read_at=datetime(2026, 1, 1, 12, tzinfo=UTC),
                   antenna=2, rssi_dbm=-55.0)


def test_no_viewer_costs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(_read: object) -> None:
        raise AssertionError("decoded without a viewer")

    monkeypatch.setattr(tap_mod, "read_item", boom)
    t = EventTap()
    t.on_read(_read())
    t.on_events([OutEvent(kind="event", payload="{}", created_at_s=0.0)])


async def test_slow_viewer_drops_and_counts_fast_viewer_gets_all() -> None:
    t = EventTap()
    slow = t.subscribe(maxsize=2)
    fast = t.subscribe(maxsize=100)
    for _ in range(5):
        t.on_read(_read())
    assert slow.dropped == 3
    assert fast.dropped == 0
    assert t.dropped_total == 3
    assert fast.queue.qsize() == 5
    item = await slow.get()
    assert item == {"type": "read", "reader": "r1", "time": "2026-01-01T12:00:00.000Z",
                    "epc": SGTIN, "uri": "urn:epc:id:sgtin:0614141.812345.6789", "antenna": 2,
                    "rssiDbm": -55.0, "hri": "(01)80614141123458(21)6789",
                    "scheme": "sgtin-96"}
    slow.close()
    fast.close()
    assert t.viewers == 0


async def test_reader_filter_and_events() -> None:
    t = EventTap()
    with t.subscribe(reader="r2") as sub:
        t.on_read(_read("r1"))
        t.on_read(BarcodeRead(reader="r2", data=b"0123", symbology="]E0",
                              read_at=datetime(2026, 1, 1, tzinfo=UTC)))
        ev = ('{"type":"ObjectEvent","eventTime":"2026-01-01T12:00:00.000Z","action":"OBSERVE",'
              '"epcList":["urn:x"],"tea:reads":[{"tea:reader":"r2"}],"eventID":"ni:///x"}')
        t.on_events([OutEvent(kind="event", payload=ev, created_at_s=0.0),
                     OutEvent(kind="status", payload="{}", created_at_s=0.0)])
        scan = await sub.get()
        event = await sub.get()
        assert sub.queue.empty()
    assert scan["type"] == "scan"
    assert scan["data"] == "0123"
    assert event == {"type": "event", "eventType": "ObjectEvent",
                     "time": "2026-01-01T12:00:00.000Z", "action": "OBSERVE",
                     "epcList": ["urn:x"], "readers": ["r2"], "eventID": "ni:///x"}
    assert t.viewers == 0
