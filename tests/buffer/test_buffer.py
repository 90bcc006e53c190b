"""SqliteBuffer core: round trips, group commit, ids, generations, leases, pipeline state."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.buffer.api import (
    PRIORITY_ALARM,
    PRIORITY_STATUS,
    Buffer,
    BufferClosedError,
    BufferStoreError,
)
from agent.buffer.rows import decode_read, encode_read
from agent.buffer.sqlite import SqliteBuffer
from agent.buffer.store import Store
from agent.model import BarcodeRead, Read, TagRead
from tests.support.buffer_helpers import (
    FakeClock,
    barcode,
    event,
    make_cfg,
    remove_db,
    ro_rows,
    size_of,
    tag,
)

# ----------------------------------------------------------------------------- pure rows

_datetimes = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))]),
)
_opt_int = st.none() | st.integers(min_value=-(2**31), max_value=2**31)
_tags = st.builds(
    TagRead, reader=st.text(min_size=1, max_size=20),
    epc=st.binary(min_size=0, max_size=62).map(lambda b: b.hex().upper()) | st.text(max_size=30),
    read_at=_datetimes, antenna=_opt_int,
    rssi_dbm=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    pc=_opt_int, phase=_opt_int, frequency_khz=_opt_int, clock_synced=st.booleans(),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=20),
        st.integers(min_value=-(2**53), max_value=2**53)
        | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
        max_size=3).map(lambda d: tuple(d.items())),
)
_barcodes = st.builds(
    BarcodeRead, reader=st.text(min_size=1, max_size=20), data=st.binary(max_size=200),
    symbology=st.none() | st.text(max_size=3), read_at=_datetimes, clock_synced=st.booleans(),
)


@given(_tags | _barcodes)
def test_row_encoding_round_trips_exactly(read: Read) -> None:
    back = decode_read(encode_read(read))
    assert back == read  # datetimes compare as instants
    assert back.read_at.tzinfo is UTC
    assert back.read_at.utcoffset() == timedelta(0)


def test_compact_epc_is_stored_as_bytes() -> None:
    row = encode_read(tag(1))
    assert isinstance(row[4], bytes)
    assert len(row[4]) == 12
    odd = TagRead(reader="r", epc="ABC", read_at=datetime.now(UTC), antenna=None, rssi_dbm=None)
    assert encode_read(odd)[4] == "ABC"


def test_a_row_written_before_schema_v2_decodes_without_extra() -> None:
    row = encode_read(tag(1))
    assert len(row) == 13
    assert row[-1] is None  # no extra: NULL, not "{}"
    assert decode_read(row[:-1]) == tag(1)  # a v1 row (salvage of an old file)


@pytest.mark.parametrize("bad", ["[1, 2]", '{"k": [1]}', '{"k": true}', "not json", 42])
def test_a_bad_extra_column_is_a_bad_row(bad: object) -> None:
    row = (*encode_read(tag(1))[:-1], bad)
    with pytest.raises((TypeError, ValueError)):
        decode_read(row)


async def test_a_v1_buffer_file_migrates_and_keeps_its_rows(tmp_path: Path) -> None:
    """A gateway upgraded from a schema-v1 agent: its buffered reads survive the migration."""
    from agent.buffer import schema

    path = tmp_path / "buffer.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(f"BEGIN; {schema.MIGRATIONS[0]} PRAGMA user_version = 1; COMMIT;")
    v1_columns = ", ".join(schema.TABLE_COLUMNS["reads"][1:-1])
    conn.executemany(f"INSERT INTO reads ({v1_columns}) VALUES ({', '.join('?' * 12)})",
                     [encode_read(tag(n))[:-1] for n in range(5)])
    conn.close()
    async with await SqliteBuffer.open(make_cfg(tmp_path)) as buf:
        assert [s.read for s in await buf.take_reads(10)] == [tag(n) for n in range(5)]
        await buf.put_reads([replace(tag(9), extra=(("tea:readerClockOffsetS", -3600.5),))])
        back = [s.read for s in await buf.take_reads(10)]
    assert back[-1] == replace(tag(9), extra=(("tea:readerClockOffsetS", -3600.5),))
    assert ro_rows(path, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]


def test_naive_read_at_is_refused() -> None:
    naive = TagRead(reader="r", epc="AB", read_at=datetime(2026, 1, 1), antenna=1,
                    rssi_dbm=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        encode_read(naive)


# ----------------------------------------------------------------------------- buffer


def test_sqlite_buffer_satisfies_the_contract(tmp_path: Path) -> None:
    buf: Buffer = SqliteBuffer(make_cfg(tmp_path))
    assert buf is not None


async def test_put_take_round_trip_oldest_first(tmp_path: Path) -> None:
    reads: list[Read] = [tag(i) for i in range(5)] + [barcode(7)] + [tag(i) for i in range(5, 9)]
    async with await SqliteBuffer.open(make_cfg(tmp_path)) as buf:
        await buf.put_reads(reads[:4])
        await buf.put_reads(reads[4:])
        got = await buf.take_reads(100)
        assert [s.read for s in got] == reads
        assert [s.id for s in got] == sorted(s.id for s in got)
        assert all(s.read.read_at.tzinfo is UTC for s in got)
        assert [s.read for s in await buf.take_reads(3)] == reads[:3]
        later = await buf.take_reads(3, after_id=got[2].id)
        assert [s.read for s in later] == reads[3:6]
    # and after reopening
    async with await SqliteBuffer.open(make_cfg(tmp_path)) as buf:
        assert [s.read for s in await buf.take_reads(100)] == reads


async def test_put_reads_refuses_naive_datetime_and_stores_nothing(tmp_path: Path) -> None:
    bad = TagRead(reader="r", epc="AB", read_at=datetime(2026, 1, 1), antenna=1,
                  rssi_dbm=None)
    async with await SqliteBuffer.open(make_cfg(tmp_path)) as buf:
        with pytest.raises(ValueError, match="timezone-aware"):
            await buf.put_reads([tag(1), bad])
        assert await buf.take_reads(10) == []


async def test_commit_events_is_atomic_and_state_round_trips(tmp_path: Path) -> None:
    async with await SqliteBuffer.open(make_cfg(tmp_path)) as buf:
        await buf.put_reads([tag(i) for i in range(6)])
        taken = await buf.take_reads(4)
        await buf.commit_events([s.id for s in taken], [event(1), event(2)],
                                {"presence/dock-1/A": "1", "presence/dock-1/B": "2", "seq": "9"})
        assert [s.read for s in await buf.take_reads(10)] == [tag(4), tag(5)]
        assert await buf.load_state("presence/") == {"presence/dock-1/A": "1",
                                                     "presence/dock-1/B": "2"}
        await buf.commit_events([], [], {"presence/dock-1/A": None, "seq": "10"})
        assert await buf.load_state() == {"presence/dock-1/B": "2", "seq": "10"}
        claimed = await buf.claim(10, lease_s=30)
        assert [c.payload for c in claimed] == [event(1).payload, event(2).payload]
    async with await SqliteBuffer.open(make_cfg(tmp_path)) as buf:
        assert await buf.load_state("seq") == {"seq": "10"}


async def test_failed_request_fails_only_its_own_future(tmp_path: Path) -> None:
    def bad(s: Store) -> None:
        s.conn.execute("INSERT INTO state (key, value) VALUES ('x', '1')")
        s.conn.execute("INSERT INTO state (key, value) VALUES ('x', '2')")  # UNIQUE violated

    async with await SqliteBuffer.open(make_cfg(tmp_path, commit_interval_ms=50)) as buf:
        before = buf.transactions
        results = await asyncio.gather(
            buf.put_reads([tag(1)]),
            buf._writer.submit(bad, "bad"),
            buf.commit_events([], [event(1)], {"y": "1"}),
            buf.put_reads([tag(2)]),
            return_exceptions=True,
        )
        assert [results[0], results[2], results[3]] == [None, None, None]
        assert isinstance(results[1], BufferStoreError)
        assert isinstance(results[1].__cause__, sqlite3.IntegrityError)
        assert [s.read for s in await buf.take_reads(10)] == [tag(1), tag(2)]
        assert await buf.load_state() == {"y": "1"}  # nothing of the failed one
        assert buf.transactions - before <= 4


async def test_group_commit_groups_concurrent_puts(tmp_path: Path) -> None:
    async with await SqliteBuffer.open(make_cfg(tmp_path, commit_interval_ms=20)) as buf:
        before = buf.transactions
        await asyncio.gather(*(buf.put_reads([tag(i)]) for i in range(300)))
        used = buf.transactions - before
        assert 1 <= used <= 5, used
        assert len(await buf.take_reads(1000)) == 300
        stats = await buf.stats()
        assert stats.transactions >= used


async def test_ids_never_repeat_and_generation_is_kept(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    async with await SqliteBuffer.open(cfg) as buf:
        gen = buf.generation
        await buf.put_reads([tag(i) for i in range(5)])
        first = await buf.take_reads(10)
        await buf.commit_events([s.id for s in first], [event(i) for i in range(5)])
        ev1 = await buf.claim(10, lease_s=5)
        await buf.ack([c.id for c in ev1])
        assert await buf.take_reads(10) == []
        assert await buf.claim(10, lease_s=5) == []
    async with await SqliteBuffer.open(cfg) as buf:  # emptied, then reopened
        assert buf.generation == gen
        await buf.put_reads([tag(9)])
        again = await buf.take_reads(10)
        assert again[0].id > max(s.id for s in first)
        await buf.commit_events([again[0].id], [event(9)])
        ev2 = await buf.claim(10, lease_s=5)
        assert ev2[0].id > max(c.id for c in ev1)
    remove_db(cfg.path)
    async with await SqliteBuffer.open(cfg) as buf:  # recreated: a new generation
        assert buf.generation != gen
        assert len(buf.generation) == 36


async def test_claim_priority_first_then_oldest(tmp_path: Path) -> None:
    async with await SqliteBuffer.open(make_cfg(tmp_path)) as buf:
        await buf.commit_events([], [event(1), event(2, priority=PRIORITY_STATUS, kind="status"),
                                     event(3), event(4, priority=PRIORITY_ALARM, kind="alarm")])
        claimed = await buf.claim(3, lease_s=10)
        assert [c.kind for c in claimed] == ["alarm", "status", "event"]
        assert claimed[2].payload == event(1).payload
        rest = await buf.claim(10, lease_s=10)
        assert [c.payload for c in rest] == [event(3).payload]
        assert await buf.claim(10, lease_s=10) == []
        st_ = await buf.stats()
        assert (st_.events_pending, st_.events_leased) == (4, 4)


async def test_claim_merges_expired_leases_and_fresh_rows_past_those_in_flight(
        tmp_path: Path) -> None:
    """The claim reads fresh rows and run-out leases each by its own index (schema V4), so the
    rows in flight ahead of them are never walked; the merged order is the one claim order."""
    clock = FakeClock()
    async with await SqliteBuffer.open(make_cfg(tmp_path), clock=clock) as buf:
        await buf.commit_events([], [event(i) for i in range(6)])
        short = await buf.claim(2, lease_s=5)  # ids 1, 2: their lease runs out first
        long = await buf.claim(2, lease_s=60)  # ids 3, 4: in flight throughout
        await buf.commit_events([], [event(9, priority=PRIORITY_STATUS, kind="status")])
        clock.advance(6)
        got = await buf.claim(10, lease_s=60)
        assert [(c.kind, c.attempts) for c in got] == [
            ("status", 0), ("event", 1), ("event", 1), ("event", 0), ("event", 0)]
        assert [c.id for c in got[1:]] == [*(c.id for c in short), long[-1].id + 1,
                                           long[-1].id + 2]
        assert await buf.claim(10, lease_s=60) == []
    from agent.buffer import ops

    conn = sqlite3.connect(tmp_path / "buffer.db")
    plan = " | ".join(r[3] for r in conn.execute(
        "EXPLAIN QUERY PLAN " + ops._CLAIM,
        {"until": 1.0, "now": 1.0, "cap": 2.0, "limit": 5}))
    conn.close()
    assert "INDEX outbox_fresh" in plan, plan
    assert "INDEX outbox_leased" in plan, plan
    assert "outbox_order" not in plan, plan


async def test_ack_release_and_attempts(tmp_path: Path) -> None:
    clock = FakeClock()
    async with await SqliteBuffer.open(make_cfg(tmp_path), clock=clock) as buf:
        await buf.commit_events([], [event(i) for i in range(3)])
        c = await buf.claim(10, lease_s=10)
        assert [x.attempts for x in c] == [0, 0, 0]
        await buf.ack([c[0].id])
        await buf.release([c[1].id], error="PUBACK timeout")
        again = await buf.claim(10, lease_s=10)
        assert [(x.id, x.attempts) for x in again] == [(c[1].id, 1)]
        await buf.release([c[1].id])  # no error given: the last one is kept
        rows = ro_rows(tmp_path / "buffer.db",
                       "SELECT id, attempts, last_error FROM outbox ORDER BY id")
        assert rows == [(c[1].id, 2, "PUBACK timeout"), (c[2].id, 0, None)]
        await buf.ack([c[1].id, c[2].id, 999_999])
        assert (await buf.stats()).events_pending == 0


async def test_lease_expiry_with_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    async with await SqliteBuffer.open(make_cfg(tmp_path), clock=clock) as buf:
        await buf.commit_events([], [event(1)])
        first = await buf.claim(10, lease_s=30)
        clock.advance(29)
        assert await buf.claim(10, lease_s=30) == []
        clock.advance(2)
        second = await buf.claim(10, lease_s=30)
        assert [(x.id, x.attempts) for x in second] == [(first[0].id, 1)]
        assert (await buf.stats()).events_leased == 1


async def test_stale_leases_are_released_at_open(tmp_path: Path) -> None:
    clock = FakeClock()
    async with await SqliteBuffer.open(make_cfg(tmp_path), clock=clock) as buf:
        await buf.commit_events([], [event(1), event(2)])
        claimed = await buf.claim(1, lease_s=3600)
    async with await SqliteBuffer.open(make_cfg(tmp_path), clock=clock) as buf:
        assert (await buf.stats()).events_leased == 0
        again = await buf.claim(10, lease_s=10)
        assert [(x.id, x.attempts) for x in again] == [(claimed[0].id, 1), (claimed[0].id + 1, 0)]


async def test_dead_letters_are_kept_counted_and_not_retried(tmp_path: Path) -> None:
    clock = FakeClock()
    async with await SqliteBuffer.open(make_cfg(tmp_path, dead_letter_policy="drop_oldest"),
                                       clock=clock, dead_letters_max=2) as buf:
        await buf.commit_events([], [event(i) for i in range(4)])
        c = await buf.claim(10, lease_s=10)
        await buf.release([c[0].id], error="payload too large")
        await buf.dead_letter([c[0].id], "rejected by broker: packet too large")
        st_ = await buf.stats()
        assert (st_.dead_letters, st_.events_pending) == (1, 3)
        clock.advance(100)
        assert [x.id for x in await buf.claim(10, lease_s=10)] == [x.id for x in c[1:]]
        rows = ro_rows(tmp_path / "buffer.db", "SELECT id, attempts, last_error, reason, payload "
                       "FROM dead_letters")
        assert rows == [(c[0].id, 1, "payload too large", "rejected by broker: packet too large",
                         c[0].payload)]
        await buf.dead_letter([c[1].id, c[2].id], "poison")  # over the cap of 2: oldest goes
        st_ = await buf.stats()
        assert st_.dead_letters == 2
        assert st_.dropped_total == 1


async def test_put_events_for_status_messages(tmp_path: Path) -> None:
    async with await SqliteBuffer.open(make_cfg(tmp_path)) as buf:
        ids = await buf.put_events([event(1, priority=PRIORITY_STATUS, kind="status")])
        claimed = await buf.claim(5, lease_s=5)
        assert [c.id for c in claimed] == ids
        with pytest.raises(ValueError, match="priority"):
            await buf.put_events([event(2, priority=-1)])


async def test_wait_for_reads_and_events(tmp_path: Path) -> None:
    async with await SqliteBuffer.open(make_cfg(tmp_path)) as buf:
        assert await buf.take_reads(10) == []
        waiter = asyncio.create_task(buf.wait_for_reads())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await buf.put_reads([tag(1)])
        await asyncio.wait_for(waiter, 1)
        assert await buf.claim(10, lease_s=1) == []
        ev_waiter = asyncio.create_task(buf.wait_for_events())
        await buf.commit_events([], [event(1)])
        await asyncio.wait_for(ev_waiter, 1)


async def test_aclose_commits_what_is_queued_and_then_refuses(tmp_path: Path) -> None:
    buf = await SqliteBuffer.open(make_cfg(tmp_path, commit_interval_ms=50))
    puts = [asyncio.ensure_future(buf.put_reads([tag(i)])) for i in range(50)]
    await asyncio.sleep(0)  # every put is queued
    await buf.aclose()
    assert all(p.done() and p.exception() is None for p in puts)
    with pytest.raises(BufferClosedError):
        await buf.put_reads([tag(1)])
    assert isinstance(BufferClosedError("x"), BufferStoreError)
    await buf.aclose()  # idempotent
    assert ro_rows(tmp_path / "buffer.db", "SELECT count(*) FROM reads") == [(50,)]
    assert size_of(Path(f"{tmp_path / 'buffer.db'}-wal")) == 0  # checkpointed at close


async def test_schema_is_versioned(tmp_path: Path) -> None:
    from agent.buffer.schema import SCHEMA_VERSION

    async with await SqliteBuffer.open(make_cfg(tmp_path)):
        pass
    rows: list[Any] = ro_rows(tmp_path / "buffer.db", "PRAGMA user_version")
    assert rows == [(SCHEMA_VERSION,)]
    assert ro_rows(tmp_path / "buffer.db", "PRAGMA auto_vacuum") == [(2,)]  # incremental
    assert ro_rows(tmp_path / "buffer.db", "PRAGMA journal_mode") == [("wal",)]


async def test_migrations_apply_missing_steps_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.buffer import schema

    async with await SqliteBuffer.open(make_cfg(tmp_path)) as buf:
        await buf.put_reads([tag(1)])
    step = "CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (42);"
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, step])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    for _ in range(2):  # the second open finds nothing to do
        async with await SqliteBuffer.open(make_cfg(tmp_path)) as buf:
            assert [s.read for s in await buf.take_reads(10)] == [tag(1)]
    assert ro_rows(tmp_path / "buffer.db", "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]
    assert ro_rows(tmp_path / "buffer.db", "SELECT x FROM extra") == [(42,)]


async def test_a_file_from_a_newer_agent_is_refused(tmp_path: Path) -> None:
    from agent.buffer.api import BufferOpenError

    async with await SqliteBuffer.open(make_cfg(tmp_path)):
        pass
    conn = sqlite3.connect(tmp_path / "buffer.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(BufferOpenError, match="newer"):
        await SqliteBuffer.open(make_cfg(tmp_path))


async def test_a_put_gathered_by_the_ingest_is_committed_without_a_second_wait(
        tmp_path: Path) -> None:
    """put_batch comes from the ingest, which already waited its group-commit window from the
    oldest read's arrival: the writer commits it at once, and a request waiting for the window
    (an uplink ack, say) is committed with it in the same transaction (issue 12, SIGKILL)."""
    async with await SqliteBuffer.open(make_cfg(tmp_path, commit_interval_ms=1000)) as buf:
        t0 = time.monotonic()
        await buf.put_batch(buf.next_read_id, 1, [(buf.next_read_id, tag(1))], [])
        assert time.monotonic() - t0 < 0.5  # not the 1 s window
        before = buf.transactions
        t0 = time.monotonic()
        state = asyncio.create_task(buf.commit_events([], [], {"k": "v"}))  # waits the window
        await asyncio.sleep(0.05)
        first = buf.next_read_id
        await buf.put_batch(first, 2, [(first, tag(2)), (first + 1, tag(3))], [])
        await state
        assert time.monotonic() - t0 < 0.5  # the put ended the other request's wait
        assert buf.transactions - before == 1  # one transaction for both
        assert await buf.load_state() == {"k": "v"}
        assert [s.read for s in await buf.take_reads(10)] == [tag(1), tag(2), tag(3)]
