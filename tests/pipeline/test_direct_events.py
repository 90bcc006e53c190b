"""Reads committed as their events in one transaction (issue 12): every-read readers and
barcode scans do not wait as reads. On a real SqliteBuffer file, through the real Ingest: the
events are those the pipeline forms from stored reads, with unique read ids that a restart never
hands out again; presence reads still wait as reads; a full buffer holds the batch and loses
nothing; a double scan is counted and logged, not stored."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.buffer.api import BufferStoreError, OutEvent
from agent.buffer.ingest import Ingest
from agent.buffer.sqlite import SqliteBuffer
from agent.config import BarcodeConfig, R2000Config
from agent.model import BarcodeRead, Read, TagRead
from agent.pipeline.worker import Pipeline
from tests.support.buffer_helpers import make_cfg, tag

EVERY = R2000Config.model_validate({"name": "line", "driver": "r2000", "port": "/dev/null",
                                    "mode": "every_read", "biz_step": "commissioning"})
PRESENCE = R2000Config.model_validate({"name": "dock-1", "driver": "r2000",
                                       "port": "/dev/null"})
SCANNER = BarcodeConfig.model_validate({"name": "scan", "driver": "barcode",
                                              "port": "/dev/null",
                                              "double_scan_window_s": 2.0})
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def scan(n: int, *, data: bytes | None = None, at_s: float = 0.0) -> BarcodeRead:
    return BarcodeRead(reader="scan", data=data or b"LINE%06d" % n, symbology=None,
                       read_at=T0 + timedelta(seconds=at_s, microseconds=n), clock_synced=True)


async def setup(tmp_path: Path, **cfg: Any) -> tuple[SqliteBuffer, Pipeline, Ingest]:
    buf = await SqliteBuffer.open(make_cfg(tmp_path, **cfg))
    ingest = Ingest(buf)
    ingest.retry_s = 0.02
    pipe = Pipeline(buf, timezone="+00:00", wake=ingest.accepted, clock=time.time,
                    readers=[EVERY, PRESENCE, SCANNER])
    ingest.direct = pipe
    return buf, pipe, ingest


async def put_all(ingest: Ingest, reads: list[Read]) -> None:
    task = asyncio.create_task(ingest.run(), name="ingest")
    target = ingest.accepted_total + len(reads)
    try:
        for r in reads:
            await ingest.put(r)
        deadline = time.monotonic() + 10
        while ingest.accepted_total < target:
            assert time.monotonic() < deadline, "ingest did not commit"
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def outbox(buf: SqliteBuffer) -> list[dict[str, Any]]:
    rows = await buf.claim(100_000, lease_s=60)
    await buf.ack([r.id for r in rows])
    return [json.loads(r.payload) for r in rows]


def read_ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["tea:reads"][0]["tea:readId"] for e in events]


async def test_scans_and_every_read_tags_are_committed_as_events(tmp_path: Path) -> None:
    buf, pipe, ingest = await setup(tmp_path)
    reads: list[Read] = [scan(i) for i in range(300)]
    reads += [tag(i, reader="line") for i in range(200)]
    await put_all(ingest, reads)
    stats = await buf.stats()
    assert stats.reads_pending == 0  # none waited as a read
    assert stats.events_pending == 500
    assert pipe.events_total == 500
    assert pipe.produced.is_set()  # the forwarder is woken
    assert not ingest.accepted.is_set()  # nothing for the pipeline to take
    events = await outbox(buf)
    ids = read_ids(events)
    assert len(set(ids)) == 500
    assert all(i.startswith(f"{buf.generation}:") for i in ids)
    assert sorted(e["tea:reads"][0].get("tea:barcode", "") for e in events[:300]) == sorted(
        f"LINE{i:06d}" for i in range(300))
    await buf.aclose()


async def test_the_same_events_as_from_stored_reads_but_for_the_read_id(tmp_path: Path) -> None:
    buf, pipe, ingest = await setup(tmp_path)
    reads: list[Read] = [scan(1), tag(7, reader="line")]
    await put_all(ingest, reads)
    direct = await outbox(buf)
    ingest.direct = None  # the path through the reads table, as before
    await put_all(ingest, [scan(1, at_s=10), tag(7, reader="line")])
    while await pipe.step():
        pass
    stored = await outbox(buf)

    def without_ids(e: dict[str, Any]) -> dict[str, Any]:
        e = dict(e, tea_reads=[{k: v for k, v in e["tea:reads"][0].items()
                                if k not in ("tea:readId", "tea:readTime")}])
        return {k: v for k, v in e.items() if k not in ("eventID", "tea:reads", "eventTime")}

    assert [without_ids(e) for e in direct] == [without_ids(e) for e in stored]
    await buf.aclose()


async def test_presence_reads_still_wait_as_reads(tmp_path: Path) -> None:
    buf, _pipe, ingest = await setup(tmp_path)
    await put_all(ingest, [tag(i) for i in range(5)] + [scan(1)])
    stats = await buf.stats()
    assert stats.reads_pending == 5  # the presence engine folds them from the buffer
    assert stats.events_pending == 1
    assert ingest.accepted.is_set()
    await buf.aclose()


async def test_read_ids_stay_dense_in_arrival_order_across_restarts(tmp_path: Path) -> None:
    """Every read gets the next id whether it waits as a read or not, so a receiver (and the
    e2e tests) can tell a lost read by a missing id; a restart continues the numbering."""
    got: list[int] = []
    for _ in range(3):
        buf, _pipe, ingest = await setup(tmp_path)
        await put_all(ingest, [scan(i) for i in range(50)] + [tag(1)] + [scan(99)])
        got += [int(i.rsplit(":", 1)[1]) for i in read_ids(await outbox(buf))]
        rows = await buf.take_reads(100)  # the presence read, numbered between the scans
        got += [r.id for r in rows]
        await buf.commit_events([r.id for r in rows], [])
        await buf.aclose()
    assert sorted(got) == list(range(1, 3 * 52 + 1))


async def test_a_batch_that_cannot_be_stored_keeps_its_ids_for_the_retry(tmp_path: Path) -> None:
    buf, _pipe, _ingest = await setup(tmp_path)
    await buf.put_reads([tag(1)])
    assert buf.next_read_id == 2
    with pytest.raises(BufferStoreError, match="out of step"):
        await buf.put_batch(5, 1, [], [])  # a skipped id would be a hole: refused
    assert buf.next_read_id == 2
    await buf.aclose()


async def test_a_double_scan_is_counted_and_logged_not_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    buf, pipe, ingest = await setup(tmp_path)
    with caplog.at_level(logging.INFO):
        await put_all(ingest, [scan(1, data=b"SAME"), scan(2, data=b"SAME", at_s=0.5)])
    assert pipe.double_scans == 1
    assert "repeated scan of b'SAME'" in caplog.text
    assert (await buf.stats()).events_pending == 1
    assert ingest.accepted_total == 2
    await buf.aclose()


async def test_a_full_buffer_holds_the_batch_and_loses_nothing(tmp_path: Path) -> None:
    buf, pipe, ingest = await setup(tmp_path, max_size=256 * 1024, when_full="backpressure")
    big = "x" * 8000
    while (await buf.stats()).used_bytes < 256 * 1024:
        await buf.commit_events([], [OutEvent(kind="event", payload=f'"{big}"',
                                              created_at_s=time.time())] * 4)
    backlog = await buf.claim(100_000, lease_s=60)
    task = asyncio.create_task(ingest.run(), name="ingest")
    for i in range(20):
        await ingest.put(scan(i))
    await asyncio.sleep(0.3)
    assert ingest.accepted_total == 0
    assert ingest.paused
    await buf.ack([r.id for r in backlog])  # the uplink delivered the backlog
    deadline = time.monotonic() + 10
    while ingest.accepted_total < 20:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    events = await outbox(buf)
    assert sorted(e["tea:reads"][0]["tea:barcode"] for e in events) == [
        f"LINE{i:06d}" for i in range(20)]  # each once
    assert pipe.events_total == 20
    await buf.aclose()


async def test_a_batch_numbered_against_a_renumbered_file_is_numbered_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The file recovered under the agent (salvaged into a new one) can expect another next
    read id than the batch was numbered with: the ingest numbers the batch (and forms its
    events) again, and nothing is lost or stored twice."""
    buf, _pipe, ingest = await setup(tmp_path)
    await put_all(ingest, [scan(i) for i in range(5)])
    buf._next_read_id = 2  # what a renumbering under the ingest looks like from here
    with caplog.at_level(logging.WARNING):
        await put_all(ingest, [scan(100 + i) for i in range(3)])
    assert "numbering the batch again" in caplog.text
    ids = sorted(int(i.rsplit(":", 1)[1]) for i in read_ids(await outbox(buf)))
    assert ids == list(range(1, 9))
    assert _pipe.double_scans == 0  # built twice, judged once: not repeats of themselves
    await buf.aclose()


# -- presence reads handed to the steps in memory (issue 12) ----------------------------------


def _count_folds(pipe: Pipeline) -> list[str]:
    """The EPCs the presence engine folds, one entry per fold."""
    folded: list[str] = []
    fold = pipe.presence.fold

    def counting(read: TagRead, *, step_s: float = 0.0) -> None:
        folded.append(read.epc)
        fold(read, step_s=step_s)

    pipe.presence.fold = counting  # type: ignore[method-assign]
    return folded


async def _fold_all(pipe: Pipeline, buf: SqliteBuffer) -> None:
    deadline = time.monotonic() + 10
    while (await buf.stats()).reads_pending:
        assert time.monotonic() < deadline, "the steps did not take every read"
        await pipe.step()


async def test_presence_reads_are_folded_from_memory_once_the_file_is_caught_up(
        tmp_path: Path) -> None:
    buf, pipe, ingest = await setup(tmp_path)
    folded = _count_folds(pipe)
    try:
        await put_all(ingest, [tag(i, reader="dock-1") for i in range(50)])
        await _fold_all(pipe, buf)  # the first step takes from the file, finds it caught up
        assert pipe.reads_from_memory == 0
        await put_all(ingest, [tag(i, reader="dock-1") for i in range(50, 400)])
        await _fold_all(pipe, buf)
        assert pipe.reads_from_memory == 350  # none read back from the file
        assert (await buf.stats()).reads_pending == 0
        assert sorted(folded) == sorted(tag(i).epc for i in range(400))  # each once
    finally:
        await buf.aclose()


async def test_reads_left_in_the_file_by_the_last_run_come_first_and_once(
        tmp_path: Path) -> None:
    buf, pipe, ingest = await setup(tmp_path)
    await put_all(ingest, [tag(i, reader="dock-1") for i in range(30)])  # never folded
    await buf.aclose()
    buf, pipe, ingest = await setup(tmp_path)  # the next run
    folded = _count_folds(pipe)
    try:
        await put_all(ingest, [tag(i, reader="dock-1") for i in range(30, 60)])
        taken: list[int] = []
        real = buf.take_reads

        async def spy(limit: int, *, after_id: int = 0) -> list[Any]:
            got = await real(limit, after_id=after_id)
            taken.extend(s.id for s in got)
            return got

        buf.take_reads = spy  # type: ignore[method-assign]
        pipe._batch_now = pipe._batch = 20  # several steps: the file's, then memory's
        await _fold_all(pipe, buf)
        await put_all(ingest, [tag(i, reader="dock-1") for i in range(60, 90)])
        await _fold_all(pipe, buf)  # the file, up to a step that finds it caught up
        await put_all(ingest, [tag(i, reader="dock-1") for i in range(90, 120)])
        await _fold_all(pipe, buf)
        assert taken[:30] == list(range(1, 31))  # the last run's reads first, in order
        assert pipe.reads_from_memory == 30
        assert (await buf.stats()).reads_pending == 0
        assert sorted(folded) == sorted(tag(i).epc for i in range(120))  # each exactly once
    finally:
        await buf.aclose()


async def test_a_read_taken_from_the_file_is_not_folded_again_from_memory(
        tmp_path: Path) -> None:
    """The ingest hands over a batch after its commit: a step may have taken it from the file
    in between. It is folded once."""
    buf, pipe, _ingest = await setup(tmp_path)
    folded = _count_folds(pipe)
    try:
        reads: list[Read] = [tag(i, reader="dock-1") for i in range(10)]
        first = buf.next_read_id
        rows = list(enumerate(reads, first))
        await buf.put_batch(first, len(reads), rows, [])  # committed, not yet handed over
        await pipe.step()  # takes them from the file (and finds it caught up)
        pipe.stored(rows)  # the hand-over comes late
        await pipe.step()
        assert len(folded) == 10
        assert pipe.reads_from_memory == 0
    finally:
        await buf.aclose()
