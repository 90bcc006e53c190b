"""Bounded buffer: drop_oldest, backpressure, max_age, space reuse under churn."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agent.buffer.api import PRIORITY_ALARM, PRIORITY_STATUS, BufferFullError, OutEvent
from agent.buffer.sqlite import SqliteBuffer
from tests.support.buffer_helpers import T0, FakeClock, event, make_cfg, ro_rows, size_of, tag

KIB = 1024


def big_event(n: int, *, priority: int = 0, at: float = T0) -> OutEvent:
    return OutEvent(kind="event" if priority == 0 else "status", payload="x" * 300 + f"#{n}",
                    priority=priority, created_at_s=at)


async def test_drop_oldest_counts_logs_and_keeps_priority_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.buffer")
    cfg = make_cfg(tmp_path, max_size=256 * KIB)
    async with await SqliteBuffer.open(cfg) as buf:
        await buf.put_events([big_event(-1, priority=PRIORITY_ALARM)])
        n = 0
        for _ in range(30):  # ~30 * 50 * 330 bytes = ~500 KiB offered
            await buf.commit_events([], [big_event(n + i) for i in range(50)])
            await buf.put_events([big_event(n, priority=PRIORITY_STATUS)])
            n += 50
        st = await buf.stats()
        assert st.used_bytes <= cfg.max_size
        assert st.dropped_events > 0
        assert st.dropped_total == st.dropped_events
        rows = ro_rows(cfg.path, "SELECT priority, payload FROM outbox ORDER BY id")
        assert sum(1 for p, _ in rows if p > 0) == 31  # every status/alarm row kept
        bulk = [int(p.split("#")[1]) for prio, p in rows if prio == 0]
        assert bulk == list(range(n - len(bulk), n))  # the newest survive, the oldest went
        assert st.dropped_events == n - len(bulk)
    assert "dropped" in caplog.text
    assert "ids 2.." in caplog.text  # the id range is logged (id 1 is the alarm)


async def test_reads_waiting_in_the_reads_stage_are_dropped_oldest_first(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, max_size=160 * KIB)
    async with await SqliteBuffer.open(cfg) as buf:
        total = 0
        for _ in range(40):
            await buf.put_reads([tag(total + i) for i in range(100)])
            total += 100
        st = await buf.stats()
        assert st.dropped_reads > 0
        assert st.used_bytes <= cfg.max_size
        left = await buf.take_reads(100_000)
        assert len(left) + st.dropped_reads == total
        assert [s.read for s in left] == [tag(i) for i in range(total - len(left), total)]


async def test_leased_events_go_after_reads(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, max_size=200 * KIB)
    async with await SqliteBuffer.open(cfg) as buf:
        await buf.commit_events([], [big_event(i) for i in range(100)])
        leased = await buf.claim(100, lease_s=600)
        for i in range(30):
            await buf.put_reads([tag(100 * i + j) for j in range(100)])
        st = await buf.stats()
        assert st.dropped_reads > 0
        assert st.dropped_events == 0
        assert st.events_leased == len(leased)


async def test_backpressure_raises_and_recovers(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, max_size=128 * KIB, when_full="backpressure")
    async with await SqliteBuffer.open(cfg) as buf:
        accepted = 0
        refused: BufferFullError | None = None
        for i in range(1000):
            try:
                await buf.put_reads([tag(100 * i + j) for j in range(100)])
            except BufferFullError as exc:
                refused = exc
                break
            accepted += 100
        assert refused is not None
        assert "backpressure" in str(refused)
        st = await buf.stats()
        assert st.dropped_total == 0
        assert st.reads_pending == accepted  # everything accepted is there; nothing dropped
        # status/alarm messages and the pipeline's commits still go through
        await buf.put_events([event(1, priority=PRIORITY_ALARM, kind="alarm")])
        taken = await buf.take_reads(accepted)
        await buf.commit_events([s.id for s in taken], [])
        await buf.put_reads([tag(1)])  # space is back
        assert (await buf.stats()).reads_pending == 1


async def test_max_age_expires_old_bulk_rows_only(tmp_path: Path) -> None:
    clock = FakeClock()
    cfg = make_cfg(tmp_path, max_age_s=3600)
    async with await SqliteBuffer.open(cfg, clock=clock) as buf:
        await buf.commit_events([], [event(i, at=clock.now) for i in range(10)])
        await buf.put_events([event(99, priority=PRIORITY_STATUS, kind="status", at=clock.now)])
        clock.advance(1800)
        await buf.commit_events([], [event(i, at=clock.now) for i in range(10, 15)])
        clock.advance(1801)  # the first ten are now older than an hour
        st = await buf.stats()
        assert st.expired == 10
        assert st.dropped_total == 10
        payloads = [c.payload for c in await buf.claim(100, lease_s=5)]
        assert payloads == [event(99).payload] + [event(i).payload for i in range(10, 15)]


async def test_max_age_applies_to_reads_with_a_synced_clock(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    cfg = make_cfg(tmp_path, max_age_s=60)
    from datetime import UTC, datetime

    async with await SqliteBuffer.open(cfg, clock=clock) as buf:
        old = datetime.fromtimestamp(T0 - 120, UTC)
        fresh = datetime.fromtimestamp(T0 - 1, UTC)
        # tag(1) was read with the clock not synchronised: its time cannot be trusted for age
        await buf.put_reads([tag(0, at=old), tag(1, at=old), tag(2, at=fresh)])
        clock.advance(2)  # the age sweep runs at most once a second
        left = [s.read for s in await buf.take_reads(10)]
        assert left == [tag(1, at=old), tag(2, at=fresh)]
        assert (await buf.stats()).expired == 1


async def test_file_does_not_grow_under_churn(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, max_size=512 * KIB)
    sizes: list[int] = []
    db_sizes: list[int] = []
    async with await SqliteBuffer.open(cfg) as buf:
        n = 0
        for _round in range(4):
            for _ in range(40):  # ~2x max_size offered each round: evictions happen
                await buf.commit_events([], [big_event(n + i) for i in range(50)])
                n += 50
            while claimed := await buf.claim(500, lease_s=60):
                await buf.ack([c.id for c in claimed])
            await buf.stats()  # one more transaction: gives space back after the drain
            db_sizes.append(size_of(cfg.path))
            sizes.append(size_of(cfg.path) + size_of(Path(f"{cfg.path}-wal")))
        st = await buf.stats()
        assert st.events_pending == 0
        assert st.dropped_events > 0
    assert max(db_sizes) <= cfg.max_size * 1.25, db_sizes
    assert sizes[-1] <= sizes[1] * 1.1, sizes  # no growth from round to round
