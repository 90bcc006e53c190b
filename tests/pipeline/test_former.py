"""The event former (issue 12): a busy batch of scans has its events formed in a child process.

Real child processes (the agent's own interpreter running agent.pipeline.former.serve), real
pipes, real signals: the texts are exactly those formed on the event loop; a child that dies,
hangs or fails leaves its batch to the event loop (nothing lost, logged) and is started again;
a cancel in the middle of a batch stops the child and propagates. Through the real Ingest and
Pipeline on a real SqliteBuffer file, a busy batch stored with the former holds the same events
as without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.config import BarcodeConfig
from agent.model import BarcodeRead, Read
from agent.pipeline.barcode_events import barcode_json
from agent.pipeline.former import BarcodeItem, EventFormer, form_barcode
from agent.pipeline.mapping import EventMapping, plans_for
from tests.pipeline.test_direct_events import SCANNER, outbox, put_all, scan, setup

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
ADD = plans_for([BarcodeConfig.model_validate({
    "name": "pack", "driver": "barcode", "port": "/dev/null", "action": "ADD",
    "biz_step": "commissioning", "read_point": "urn:epc:id:sgln:0614141.00777.0"})])["pack"]
MAPPINGS: dict[str, EventMapping] = {"scan": plans_for([SCANNER])["scan"].mapping,
                                     "pack": ADD.mapping}
DATA = [
    b"LINE000001",  # plain text: the keyed template
    b"0109506000134352" b"21SER-1",  # GTIN + serial
    b"0109506000134352" b"10LOT7\x1d" b"17261231",  # GTIN + lot + expiry
    b"00106141411234567895",  # SSCC
    b"https://id.gs1.org/01/09506000134352/21/ABC%2F1",  # a Digital Link
    b"\xff\xfe not text",  # bytes that are not UTF-8
    b"",
]


def items(n: int) -> list[BarcodeItem]:
    out: list[BarcodeItem] = []
    for i in range(n):
        at = T0 + timedelta(milliseconds=i * 7.3)
        if i % 5 == 4:
            at = at.astimezone(timezone(timedelta(hours=2)))  # a time not in UTC
        out.append(("scan" if i % 3 else "pack", DATA[i % len(DATA)],
                    (None, "]C1", "]E0")[i % 3], at, i % 4 != 0, f"g1:{i + 1}",
                    (0.0, 0.0, 3.25)[i % 3]))
    return out


@contextlib.asynccontextmanager
async def running(f: EventFormer) -> AsyncIterator[EventFormer]:
    """``f.run()`` as the agent's TaskGroup runs it, cancelled at the end (the agent stops)."""
    task = asyncio.create_task(f.run(), name="event-former")
    try:
        yield f
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def former() -> AsyncIterator[EventFormer]:
    async with running(EventFormer(min_reads=4, restart_s=0.05)) as f:
        yield f


async def ready(f: EventFormer, *, starts: int = 1) -> None:
    deadline = time.monotonic() + 30
    while not (f.ready and f.starts >= starts):
        assert time.monotonic() < deadline, "the former's process did not start"
        f.wants(f.min_reads)  # a busy batch asks for it
        await asyncio.sleep(0.02)


async def gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"process {pid} is still there"
        await asyncio.sleep(0.02)


async def test_the_process_forms_exactly_the_texts_of_the_event_loop(
        former: EventFormer) -> None:
    assert not former.wants(4)  # the first busy batch asks for the process ...
    await ready(former)  # ... and is formed on the loop meanwhile
    assert former.wants(4)
    batch = items(300)
    texts = await former.form("+01:00", MAPPINGS, batch)
    here = [form_barcode(item, "+01:00", MAPPINGS) for item in batch]
    assert texts == here
    reader, data, symbology, at, synced, source, step_s = batch[1]
    assert here[1] == barcode_json(
        BarcodeRead(reader=reader, data=data, symbology=symbology, read_at=at,
                    clock_synced=synced),
        timezone="+01:00", mapping=MAPPINGS[reader], source_id=source, step_s=step_s)
    assert (former.batches, former.events, former.failures) == (1, 300, 0)


async def test_a_quiet_line_never_starts_the_process() -> None:
    async with running(EventFormer()) as f:
        assert not f.wants(f.min_reads - 1)
        await asyncio.sleep(0.2)
        assert (f.starts, f.pid) == (0, None)
        assert await f.form("+00:00", MAPPINGS, items(3)) is None  # not ready: the loop forms


async def test_a_killed_process_leaves_its_batch_to_the_loop_and_comes_back(
        former: EventFormer, caplog: pytest.LogCaptureFixture) -> None:
    former.wants(4)
    await ready(former)
    first = former.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    with caplog.at_level(logging.WARNING):
        assert await former.form("+00:00", MAPPINGS, items(10)) is None
        assert former.failures == 1
        assert "formed on the event loop (nothing lost)" in caplog.text
        former.wants(4)  # the next busy batch asks again
        await ready(former, starts=2)
    assert former.pid != first
    # its death is logged (the code is -9, or 255 when the child watcher lost the race to
    # reap it under load: which one is asyncio's business, not ours)
    assert f"the process (pid {first}) exited with" in caplog.text
    assert await former.form("+00:00", MAPPINGS, items(10)) == [
        form_barcode(i, "+00:00", MAPPINGS) for i in items(10)]


async def test_a_hung_process_is_given_up_after_the_timeout(
        caplog: pytest.LogCaptureFixture) -> None:
    async with running(EventFormer(min_reads=4, restart_s=0.05, form_timeout_s=0.3)) as f:
        f.wants(4)
        await ready(f)
        assert f.pid is not None
        os.kill(f.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        assert await f.form("+00:00", MAPPINGS, items(10)) is None
        assert 0.25 < time.monotonic() - t0 < 5
        assert "no answer (TimeoutError())" in caplog.text
        assert not f.ready


async def test_a_cancel_in_the_middle_of_a_batch_stops_the_process(
        former: EventFormer) -> None:
    former.wants(4)
    await ready(former)
    pid = former.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the batch is never answered
    job = asyncio.create_task(former.form("+00:00", MAPPINGS, items(10)), name="form")
    await asyncio.sleep(0.1)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job  # never swallowed
    await gone(pid)  # the pipe was out of step, so the process went (run() reaped it)
    assert not former.ready


async def test_the_process_goes_with_the_agent() -> None:
    async with running(EventFormer(min_reads=4)) as f:
        f.wants(4)
        await ready(f)
        pid = f.pid
        assert pid is not None
    await gone(pid)  # run() was cancelled: the agent stops


async def test_a_process_with_no_busy_batch_for_a_while_is_stopped_and_comes_back(
        caplog: pytest.LogCaptureFixture) -> None:
    """A burst (or the drain after an outage) must not keep the process's memory for ever."""
    async with running(EventFormer(min_reads=4, idle_stop_s=0.5)) as f:
        with caplog.at_level(logging.INFO):
            f.wants(4)
            await ready(f)
            pid = f.pid
            assert pid is not None
            for _ in range(4):  # batches keep it: 0.2 s apart, each under the idle time
                assert await f.form("+00:00", MAPPINGS, items(5)) is not None
                await asyncio.sleep(0.2)
            assert f.ready
            await gone(pid)
            assert not f.ready
            assert await f.form("+00:00", MAPPINGS, items(5)) is None  # the loop forms them
            await ready(f, starts=2)  # the next busy batch starts it again
            # (run() logged the stop before it started the next: not at once when pid went)
            assert f"no busy batch for 0.5 s; process {pid} stopped" in caplog.text
            assert "exited with" not in caplog.text  # not taken for a failure
            assert await f.form("+00:00", MAPPINGS, items(5)) == [
                form_barcode(i, "+00:00", MAPPINGS) for i in items(5)]


async def test_a_bug_in_the_process_is_reported_and_its_batch_left_to_the_loop(
        former: EventFormer, caplog: pytest.LogCaptureFixture) -> None:
    former.wants(4)
    await ready(former)
    bad = [("nobody", b"X", None, T0, True, "g1:1", 0.0)]  # no mapping: a KeyError there
    assert await former.form("+00:00", MAPPINGS, bad) is None
    assert "a wrong answer (a bug)" in caplog.text
    assert "KeyError: 'nobody'" in caplog.text  # the child's traceback, in the agent's log


async def test_a_busy_batch_through_the_ingest_stores_the_same_events(tmp_path: Path) -> None:
    """Real Ingest, Pipeline and SqliteBuffer: the same scans, with the former and without,
    give the same events (but for the buffer file's generation in the read ids, and so the
    hashes: the texts themselves are compared above); double scans are judged on the event
    loop either way and counted alike."""
    reads: list[Read] = [scan(i) for i in range(400)]
    reads += [scan(7, data=b"LINE000007", at_s=0.5)] * 3  # repeats within the window
    got = []
    for use in (False, True):
        (tmp_path / str(use)).mkdir()
        buf, pipe, ingest = await setup(tmp_path / str(use))
        async with running(EventFormer(min_reads=4)) as f:
            if use:
                pipe.former = f
                f.wants(4)
                await ready(f)
            await put_all(ingest, reads)
        events = await outbox(buf)
        for e in events:
            del e["eventID"]
            detail = e["tea:reads"][0]
            detail["tea:readId"] = detail["tea:readId"].removeprefix(f"{buf.generation}:")
        got.append((events, pipe.double_scans, f.events))
        await buf.aclose()
    (without, doubles_without, _), (with_former, doubles_with, formed) = got
    assert with_former == without
    assert len(without) == 400
    assert doubles_with == doubles_without == 3
    assert formed > 0  # busy batches went to the process


async def test_without_the_process_the_pipeline_forms_them_itself(tmp_path: Path) -> None:
    """A former that is not ready (or failed) costs nothing but the loop's time."""
    buf, pipe, ingest = await setup(tmp_path)
    pipe.former = EventFormer(min_reads=4)  # never started: run() is not running
    await put_all(ingest, [scan(i) for i in range(100)])
    assert len(await outbox(buf)) == 100
    await buf.aclose()
