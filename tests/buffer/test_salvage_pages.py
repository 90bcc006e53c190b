"""Issue 13 item 4 (case 7 of "Why"): salvage saves what is there, and losses raise alarms.

Real SQLite files throughout: the page reader is checked against what SQLite itself returns,
and each damaged-file case is made by hand on a file the buffer wrote.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent.buffer import ledger, schema
from agent.buffer.pages import PageImages, check_wal, decode_record
from agent.buffer.salvage import payload_problem
from agent.buffer.sqlite import SqliteBuffer
from tests.buffer.test_buffer_faults import fill, quarantined, write_garbage
from tests.support.buffer_helpers import event, make_cfg, tag

# ----------------------------------------------------------------------------- the page reader


def _sqlite_file(path: Path, *, wal: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT, b INTEGER, "
                 "c REAL, d BLOB)")
    for i in range(1, 1501):  # payloads from empty to 9 KB: overflow chains included
        conn.execute("INSERT INTO t (a, b, c, d) VALUES (?, ?, ?, ?)",
                     ("x" * (i * 7 % 9000), i * 1_000_003 - 2**40, i / 3, bytes([i % 256]) * 5))
    conn.execute("DELETE FROM t WHERE id % 3 = 0")
    return conn


@pytest.mark.parametrize("wal", [False, True])
def test_pages_give_back_exactly_what_sqlite_returns(tmp_path: Path, wal: bool) -> None:
    path = tmp_path / "t.db"
    conn = _sqlite_file(path, wal=wal)
    want = {r[0]: r[1:] for r in conn.execute("SELECT id, a, b, c, d FROM t")}
    wal_bytes = Path(f"{path}-wal").read_bytes() if wal else b""
    images = PageImages(path.read_bytes(), wal_bytes)
    got = {r.rowid: r.values[1:] for r in images.rows() if len(r.values) == 5}
    conn.close()
    assert got == want  # deleted rows are not brought back, overflow chains are followed
    if wal:
        assert images.wal_frames > 0
        assert check_wal(wal_bytes).damaged is False


def test_a_damaged_wal_frame_is_seen_and_costs_only_its_page(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    conn = _sqlite_file(path, wal=True)
    want = {r[0] for r in conn.execute("SELECT id FROM t")}
    wal = bytearray(Path(f"{path}-wal").read_bytes())
    conn.close()
    page = int.from_bytes(wal[8:12], "big")
    frame = 32 + (24 + page) * 40
    wal[frame + 24 + page - 64 : frame + 24 + page] = b"\xab" * 64  # inside frame 40's page
    check = check_wal(bytes(wal))
    assert check.damaged
    assert check.valid == 40
    got = {r.rowid for r in PageImages(Path(path).read_bytes(), bytes(wal)).rows()}
    assert len(want - got) < 60  # one page's rows at most, not everything after frame 40


@pytest.mark.parametrize("payload", [b"", b"\x00" * 7, b"\x05\x99", b"\xff" * 40])
def test_a_garbage_record_is_none_not_an_exception(payload: bytes) -> None:
    assert decode_record(payload) is None


def test_payload_shapes() -> None:
    assert payload_problem("event", event(1).payload) is None
    assert payload_problem("alarm", '{"type": "x"}') is None
    assert "not JSON" in str(payload_problem("event", '{"type": "ObjectEvent", "eve\x01'))
    assert "not an EPCIS event" in str(payload_problem("event", '{"type": "Nope"}'))
    assert "eventID" in str(payload_problem(
        "event", '{"type": "ObjectEvent", "eventTime": "2026-01-01T00:00:00Z"}'))
    assert "object" in str(payload_problem("status", "[1, 2]"))


# ----------------------------------------------------------------------------- damaged files


def _report(alarm: dict[str, object]) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(Path(str(alarm["report"])).read_text())
    return report


def _delete_buffer_files(directory: Path) -> None:
    for p in directory.glob("buffer.db*"):
        if not p.name.endswith(".ledger"):
            p.unlink()


async def _alarms(buf: SqliteBuffer) -> list[dict[str, object]]:
    claimed = await buf.claim(100_000, lease_s=60)
    out = [json.loads(c.payload) for c in claimed if c.kind == "alarm"]
    await buf.release([c.id for c in claimed])
    return out


async def test_truncated_to_half_salvages_the_intact_pages(tmp_path: Path) -> None:
    """Before: 0 rows ('sqlite_sequence unreadable') although half the payloads were there."""
    cfg = make_cfg(tmp_path)
    await fill(cfg.path, 3000, 3000)
    size = cfg.path.stat().st_size
    with cfg.path.open("r+b") as f:
        f.truncate(size // 2)
    async with await SqliteBuffer.open(cfg) as buf:
        claimed = await buf.claim(100_000, lease_s=60)
        reads = await buf.take_reads(100_000)
    events = [c for c in claimed if c.kind == "event"]
    alarm = next(json.loads(c.payload) for c in claimed if c.kind == "alarm")
    assert alarm["type"] == "buffer_corrupt"
    assert len(reads) + len(events) >= 2000, (len(reads), len(events), alarm)
    assert sum(alarm["page_rows"].values()) > 0  # the page-by-page pass found them
    for c in events:  # ids and payloads as they were written
        assert json.loads(c.payload)["n"] == c.id - 1
    assert alarm["report"]
    assert _report(alarm)["type"] == "buffer_corrupt"


async def test_a_damaged_payload_is_never_published(tmp_path: Path) -> None:
    """Before: a salvaged row with garbage in its payload went out as a broken document."""
    cfg = make_cfg(tmp_path)
    await fill(cfg.path, 3000, 1000)
    raw = bytearray(cfg.path.read_bytes())
    victim = b'"n": 700}'
    at = raw.find(victim)
    assert at > 0
    raw[at : at + 4] = b"\x01\x02{]"  # same length: SQLite still reads the row
    cfg.path.write_bytes(bytes(raw))
    write_garbage(cfg.path, len(raw) // 3, 8192)  # and damage that SQLite does notice
    async with await SqliteBuffer.open(cfg) as buf:
        claimed = await buf.claim(100_000, lease_s=60)
    events = [c for c in claimed if c.kind == "event"]
    for c in events:
        assert payload_problem("event", c.payload) is None
    assert 701 not in {c.id for c in events}
    alarm = next(json.loads(c.payload) for c in claimed if c.kind == "alarm")
    assert alarm["invalid_rows"] >= 1
    report = _report(alarm)
    assert any(r["id"] == 701 and "not JSON" in r["reason"]
               for r in report["invalid_rows_described"])
    assert quarantined(tmp_path)


async def test_truncated_to_zero_raises_an_alarm_and_ids_go_on(tmp_path: Path) -> None:
    """Before: the agent started on a fresh file without a word; 10,342 events were gone."""
    cfg = make_cfg(tmp_path)
    old_gen = await fill(cfg.path, 500, 300)
    remembered, _ = ledger.load(ledger.ledger_path(cfg.path))
    assert remembered == ledger.Ledger(old_gen, 500, 300)
    cfg.path.write_bytes(b"")
    async with await SqliteBuffer.open(cfg) as buf:
        alarms = await _alarms(buf)
        await buf.put_reads([tag(1)])
        (read,) = await buf.take_reads(10)
    assert [a["type"] for a in alarms] == ["buffer_replaced"]
    assert alarms[0]["previous_generation"] == old_gen
    assert alarms[0]["committed_outbox_id"] == 300
    assert read.id == 501  # no readId means two different reads


async def test_a_deleted_file_is_noticed_too_and_a_clean_restart_is_quiet(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    await fill(cfg.path, 10, 10)
    async with await SqliteBuffer.open(cfg) as buf:
        assert await _alarms(buf) == []  # a normal restart: nothing to report
    _delete_buffer_files(tmp_path)
    async with await SqliteBuffer.open(cfg) as buf:
        assert [a["type"] for a in await _alarms(buf)] == ["buffer_replaced"]


async def test_an_older_copy_put_back_is_committed_rows_lost(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    await fill(cfg.path, 100, 100)
    shutil.copy(cfg.path, tmp_path / "old.db")
    async with await SqliteBuffer.open(cfg) as buf:
        await buf.put_events([event(i) for i in range(50)])
    shutil.copy(tmp_path / "old.db", cfg.path)
    async with await SqliteBuffer.open(cfg) as buf:
        alarms = await _alarms(buf)
        (new_id,) = await buf.put_events([event(999)])
    assert [a["type"] for a in alarms] == ["buffer_rows_lost"]
    assert alarms[0]["committed_outbox_id"] == 150
    assert alarms[0]["file_outbox_id"] == 100
    assert new_id == 152  # 151 is the alarm


async def test_garbage_in_the_wal_is_detected_and_later_commits_salvaged(tmp_path: Path) -> None:
    """Before: 120 committed rows vanished without notice (SQLite stops at the bad frame)."""
    live = tmp_path / "live"
    crash = tmp_path / "crash"
    live.mkdir()
    crash.mkdir()
    cfg = make_cfg(live)
    async with await SqliteBuffer.open(cfg) as buf:
        for i in range(0, 600, 50):  # many small commits: many WAL frames
            await buf.put_reads([tag(j) for j in range(i, i + 50)])
        for p in live.iterdir():  # the files as a power cut would leave them
            shutil.copy(p, crash / p.name)
    wal_path = crash / "buffer.db-wal"
    wal = bytearray(wal_path.read_bytes())
    page = int.from_bytes(wal[8:12], "big")
    frames = (len(wal) - 32) // (24 + page)
    assert frames > 6
    victim = 32 + (24 + page) * (frames // 3)
    wal[victim + 24 + 100 : victim + 24 + 164] = b"\xab" * 64
    wal_path.write_bytes(bytes(wal))
    cfg2 = make_cfg(crash)
    async with await SqliteBuffer.open(cfg2) as buf:
        reads = await buf.take_reads(10_000)
        alarms = await _alarms(buf)
    assert [a["type"] for a in alarms] == ["buffer_corrupt"]
    assert "write-ahead log" in str(alarms[0]["reason"])
    ids = {r.id for r in reads}
    assert len(ids) >= 550, len(ids)  # the commits after the damaged frame are back
    assert max(ids) == 600
    assert all(r.read == tag(r.id - 1) for r in reads)


async def test_delivered_rows_left_in_freed_pages_are_never_salvaged(tmp_path: Path) -> None:
    """The writer deletes with ``secure_delete = FAST`` (issue 12: the zeros that Debian's
    SQLite wrote over every freed page went through the WAL and to the disk again): a freed
    page keeps its delivered rows until it is reused, and the page-by-page pass of salvage
    skips the freelist, so none of them comes back as a duplicate."""
    cfg = make_cfg(tmp_path, max_size=1 << 30)
    async with await SqliteBuffer.open(cfg) as buf:
        ids = await buf.put_events([event(j) for j in range(3000)])
        await buf.ack(ids[:2000])  # delivered: whole leaf pages freed
        await buf.commit_events([], [], {"k": "v"})
    conn = sqlite3.connect(cfg.path, isolation_level=None)
    try:
        schema.configure(conn, "FULL")
        assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 2  # FAST
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        conn.close()
    data = cfg.path.read_bytes()
    assert free > 0
    stale = {int(m) for m in re.findall(rb'"n": (\d+)}', data)} - set(range(2000, 3000))
    assert stale  # delivered rows still in the file, on free pages (none with secure_delete 1)
    images = PageImages(data, b"")
    salvaged = {r.rowid for r in images.rows() if len(r.values) == 8}  # outbox rows
    assert salvaged == set(ids[2000:])
