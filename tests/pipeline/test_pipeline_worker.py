"""The Pipeline worker on a real SqliteBuffer file: modes, state across restarts, event IDs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.buffer.sqlite import SqliteBuffer
from agent.config import R2000Config
from agent.model import BarcodeRead
from agent.pipeline.epcis import HASH_CONTEXT
from agent.pipeline.eventhash import event_hash
from agent.pipeline.worker import Pipeline
from tests.support.buffer_helpers import FakeClock, make_cfg
from tests.support.pipeline_helpers import DOOR_A, DOOR_B, T0, read, sgtin_hex

READER = R2000Config.model_validate({
    "name": "dock", "driver": "r2000", "port": "/dev/null", "antennas": [1, 2, 3, 4],
    "read_point": DOOR_A, "biz_step": "receiving", "disposition": "in_progress",
    "on_depart": {"biz_step": "storing"},
    "antenna_map": {3: {"read_point": DOOR_B, "biz_step": "shipping",
                        "disposition": "in_transit"},
                    4: {"read_point": DOOR_B, "biz_step": "shipping",
                        "disposition": "in_transit"}},
    "presence": {"window_s": 1.0, "depart_after_s": 10.0},
})
EVERY = R2000Config.model_validate({"name": "line", "driver": "r2000", "port": "/dev/null",
                                    "mode": "every_read", "action": "ADD",
                                    "biz_step": "commissioning", "disposition": "active"})
SCANNER = R2000Config.model_validate({"name": "scan", "driver": "r2000", "port": "/dev/null",
                                      "double_scan_window_s": 2.0})


async def open_pipeline(tmp_path: Path, clock: FakeClock) -> tuple[SqliteBuffer, Pipeline]:
    buf = await SqliteBuffer.open(make_cfg(tmp_path), clock=clock)
    pipe = Pipeline(buf, timezone="+08:00", wake=asyncio.Event(), clock=clock,
                    readers=[READER, EVERY, SCANNER])
    return buf, pipe


async def drain(buf: SqliteBuffer) -> list[dict[str, Any]]:
    rows = await buf.claim(10_000, lease_s=60)
    await buf.ack([r.id for r in rows])
    return [json.loads(r.payload) for r in rows]


async def feed(buf: SqliteBuffer, pipe: Pipeline, clock: FakeClock, start: float, end: float,
               epcs: list[str], *, antenna: int = 1, every_s: float = 0.2) -> None:
    t = start
    while t < end:
        clock.now = t
        await buf.put_reads([read(t, e, antenna=antenna) for e in epcs])
        await pipe.step()
        t += every_s


async def tick(pipe: Pipeline, clock: FakeClock, start: float, end: float) -> None:
    t = start
    while t <= end:
        clock.now = t
        await pipe.step()
        t += 0.5


PALLET = [sgtin_hex(n) for n in range(1, 6)]


async def test_restart_in_the_middle_of_a_presence(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    buf, pipe = await open_pipeline(tmp_path, clock)
    await feed(buf, pipe, clock, T0, T0 + 5, PALLET)
    events = await drain(buf)
    assert [e["tea:transition"] for e in events] == ["arrived"]
    arrival = events[0]
    assert sorted(arrival["epcList"]) == sorted(
        f"urn:epc:id:sgtin:0614141.812345.{n}" for n in range(1, 6))
    assert arrival["bizStep"] == "receiving"
    assert arrival["readPoint"] == {"id": DOOR_A}
    assert arrival["eventID"] == event_hash(arrival, HASH_CONTEXT)
    await buf.aclose()

    buf, pipe = await open_pipeline(tmp_path, clock)  # restart: the pallet is still there
    await feed(buf, pipe, clock, T0 + 5, T0 + 60, PALLET)
    assert await drain(buf) == []  # no second arrival
    await buf.aclose()

    buf, pipe = await open_pipeline(tmp_path, clock)  # restart, then the pallet leaves
    await tick(pipe, clock, T0 + 60, T0 + 75)
    events = await drain(buf)
    assert [e["tea:transition"] for e in events] == ["departed"]
    dep = events[0]
    assert dep["action"] == "OBSERVE"
    assert dep["bizStep"] == "storing"
    assert "disposition" not in dep
    assert sorted(dep["epcList"]) == sorted(arrival["epcList"])
    assert await buf.load_state("presence/") == {}
    await buf.aclose()


async def test_crash_before_commit_replays_the_reads_without_a_double_arrival(
    tmp_path: Path,
) -> None:
    clock = FakeClock(T0)
    buf, pipe = await open_pipeline(tmp_path, clock)
    await feed(buf, pipe, clock, T0, T0 + 3, PALLET)
    assert len(await drain(buf)) == 1
    # reads accepted, then the pipeline "crashes" before committing them (no step)
    await buf.put_reads([read(T0 + 3, e) for e in PALLET])
    await buf.aclose()
    buf, pipe = await open_pipeline(tmp_path, clock)
    clock.now = T0 + 3.1
    assert await pipe.step() == len(PALLET)
    assert await drain(buf) == []
    assert (await buf.stats()).reads_pending == 0
    await buf.aclose()


async def test_every_read_mode_keeps_one_event_per_read_with_its_read_id(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    buf, pipe = await open_pipeline(tmp_path, clock)
    reads = [read(T0 + i * 0.001, sgtin_hex(7), reader="line") for i in range(3)]
    reads.append(read(T0, "E2801160600002080000ABCD", reader="line"))
    await buf.put_reads(reads)
    await pipe.step()
    events = await drain(buf)
    assert len(events) == 4
    ids = [e["tea:reads"][0]["tea:readId"] for e in events]
    assert len(set(ids)) == 4
    assert all(i.startswith(buf.generation + ":") for i in ids)
    assert len({e["eventID"] for e in events}) == 4
    assert events[0]["epcList"] == ["urn:epc:id:sgtin:0614141.812345.7"]
    assert events[0]["action"] == "ADD"
    assert events[0]["bizStep"] == "commissioning"
    assert events[3]["epcList"] == ["urn:epc:raw:96.xE2801160600002080000ABCD"]
    assert "tea:rawReason" in events[3]["tea:reads"][0]
    await buf.aclose()


async def test_barcode_double_scans_are_dropped_within_the_window(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    buf, pipe = await open_pipeline(tmp_path, clock)
    def scan(t: float, data: bytes) -> BarcodeRead:
        return BarcodeRead(reader="scan", data=data, symbology="]C1",
                           read_at=datetime.fromtimestamp(t, UTC))

    sscc = b"00106141412345678908"
    await buf.put_reads([scan(T0, sscc), scan(T0 + 0.5, sscc), scan(T0 + 1.0, b"01" + b"0" * 14),
                         scan(T0 + 2.5, sscc)])
    await pipe.step()
    events = await drain(buf)
    assert [e["tea:reads"][0]["tea:barcode"] for e in events] == [
        sscc.decode(), "01" + "0" * 14, sscc.decode()]
    assert pipe.double_scans == 1
    assert events[0]["epcList"] == ["https://id.gs1.org/00/106141412345678908"]
    await buf.aclose()


async def test_event_ids_are_stable_in_the_stored_payload(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    payloads: list[list[str]] = []
    for run in range(2):
        (tmp_path / str(run)).mkdir()
        buf, pipe = await open_pipeline(tmp_path / str(run), clock)
        await feed(buf, pipe, clock, T0, T0 + 3, PALLET, antenna=3)
        rows = await buf.claim(100, lease_s=60)
        payloads.append([r.payload for r in rows])
        await buf.aclose()
    assert payloads[0] == payloads[1]  # same reads -> byte-identical events, same eventIDs
    (event,) = [json.loads(p) for p in payloads[0]]
    assert event["readPoint"] == {"id": DOOR_B}
    assert event["eventID"] == event_hash(event, HASH_CONTEXT)
    assert event["eventTimeZoneOffset"] == "+08:00"
    assert event["eventTime"].endswith("Z")


async def test_a_corrupt_presence_state_value_is_reported_and_skipped_not_a_crash_loop(
    tmp_path: Path, caplog: Any,
) -> None:
    clock = FakeClock(T0)
    buf, pipe = await open_pipeline(tmp_path, clock)
    await feed(buf, pipe, clock, T0, T0 + 3, PALLET)
    assert len(await drain(buf)) == 1
    state = await buf.load_state("presence/")
    keys = sorted(k for k in state if k.startswith("presence/t/"))
    good = json.loads(state[keys[1]])
    good[6] = "yesterday"  # first_seen: wrong type, would blow up later in arithmetic
    await buf.commit_events([], [], state={
        keys[0]: "{not json",
        keys[1]: json.dumps(good),
        keys[2]: "[1, 2]",
        "presence/h/dock": "soon",
    })
    await buf.aclose()

    buf, pipe = await open_pipeline(tmp_path, clock)  # restart: must not crash
    clock.now = T0 + 3.5
    await pipe.step()
    assert pipe.presence.corrupt_state == 4
    assert "corrupt presence state" in caplog.text
    # the bad keys are gone (reported once, not at every start); the good tags still depart
    state = await buf.load_state("presence/")
    assert not set(state) & {keys[0], keys[1], keys[2], "presence/h/dock"}
    await tick(pipe, clock, T0 + 4, T0 + 20)
    events = await drain(buf)
    assert [e["tea:transition"] for e in events] == ["departed"]
    assert len(events[0]["epcList"]) == len(PALLET) - 3
    await buf.aclose()


async def test_a_commit_refused_by_a_full_disk_loses_no_scan_and_no_arrival(
    tmp_path: Path,
) -> None:
    """commit_events refused (SQLITE_FULL): the step must neither crash the pipeline (and the
    agent) nor keep in memory what it did not commit - the barcode double-scan window marked
    the scans as seen, so their replay was dropped as "repeated", and the presence engine had
    emitted the arrival, so the replay folded into an already present tag: both lost."""
    from agent.buffer.store import Store

    async def max_pages(buf: SqliteBuffer, extra: int | None) -> None:
        def setit(s: Store) -> None:
            s.conn.executescript("PRAGMA incremental_vacuum;")  # no free pages left to reuse
            n = 1_073_741_823 if extra is None else extra + int(
                s.conn.execute("PRAGMA page_count").fetchone()[0])
            s.conn.execute(f"PRAGMA max_page_count = {n}")
        await buf._writer.submit(setit, "test", in_transaction=False)

    clock = FakeClock(T0)
    buf, pipe = await open_pipeline(tmp_path, clock)
    sscc = b"00106141412345678908"
    await buf.put_reads([BarcodeRead(reader="scan", data=sscc, symbology="]C1",
                                     read_at=datetime.fromtimestamp(T0, UTC))])
    many = [sgtin_hex(n) for n in range(100, 400)]  # events and state outgrow the reads
    await buf.put_reads([read(T0 + i * 0.1, e) for i in range(2) for e in many])
    await max_pages(buf, 0)
    clock.now = T0 + 2  # the arrival batch closes in this step
    assert await pipe.step() == 0  # refused: nothing taken, nothing raised
    await max_pages(buf, None)  # space returns
    await pipe.step()
    events = await drain(buf)
    kinds = sorted(e.get("tea:transition", "scan") for e in events)
    assert kinds == ["arrived", "scan"]
    assert (await buf.stats()).reads_pending == 0
    await buf.aclose()
