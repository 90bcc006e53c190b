"""Faults: corrupt files (quarantine + salvage + alarm), unusable paths, disk full."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.buffer.api import (
    PRIORITY_ALARM,
    BufferDiskFullError,
    BufferFullError,
    BufferOpenError,
)
from agent.buffer.sqlite import SqliteBuffer
from agent.buffer.store import Store
from tests.support.buffer_helpers import event, make_cfg, ro_rows, tag


def write_garbage(path: Path, offset: int, size: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(bytes((i * 151 + 7) % 256 for i in range(size)))


def quarantined(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir()
                  if ".corrupt-" in p.name and not p.name.endswith(".report.json"))


async def fill(cfg_path: Path, reads: int, events: int) -> str:
    async with await SqliteBuffer.open(make_cfg(cfg_path.parent)) as buf:
        for i in range(0, reads, 500):
            await buf.put_reads([tag(j) for j in range(i, min(reads, i + 500))])
        for i in range(0, events, 500):
            await buf.commit_events([], [event(j) for j in range(i, min(events, i + 500))],
                                    {"k": "v"})
        return buf.generation


async def test_garbage_in_the_middle_is_quarantined_salvaged_and_alarmed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_cfg(tmp_path)
    old_gen = await fill(cfg.path, 3000, 1000)
    size = cfg.path.stat().st_size
    write_garbage(cfg.path, size // 3, 8192)

    async with await SqliteBuffer.open(cfg) as buf:
        assert buf.generation != old_gen
        st = await buf.stats()
        reads = await buf.take_reads(10_000)
        claimed = await buf.claim(10_000, lease_s=60)
    q = quarantined(tmp_path)
    assert q, "the corrupt file must be kept aside"
    assert q[0].name.startswith("buffer.db.corrupt-")
    assert q[0].name.endswith("Z")
    assert st.quarantined_files == 1
    salvaged = len(reads) + len(claimed) - 1 + 1  # less the alarm, plus the one state key
    assert st.salvaged_rows == salvaged
    assert 3500 <= salvaged < 4001  # most rows are back: 8 KiB of garbage costs a few pages
    assert all(r.read == tag(r.id - 1) for r in reads)  # ids and contents kept
    alarms = [c for c in claimed if c.kind == "alarm"]
    assert len(alarms) == 1
    assert alarms[0].priority == PRIORITY_ALARM
    assert claimed[0].kind == "alarm"
    info = json.loads(alarms[0].payload)
    assert info["type"] == "buffer_corrupt"
    assert info["quarantined_as"] == str(q[0])
    assert info["salvaged_total"] == salvaged
    assert info["previous_generation"] == old_gen
    assert "quarantined corrupt file" in caplog.text


async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    cfg.path.write_bytes(b"this is not an SQLite file\n" * 400)
    async with await SqliteBuffer.open(cfg) as buf:
        st = await buf.stats()
        claimed = await buf.claim(10, lease_s=5)
        await buf.put_reads([tag(1)])
        assert len(await buf.take_reads(10)) == 1
    assert st.quarantined_files == 1
    assert st.salvaged_rows == 0
    assert [c.kind for c in claimed] == ["alarm"]
    info = json.loads(claimed[0].payload)
    assert info["salvaged_total"] == 0
    assert "not a database" in info["reason"]
    (q,) = quarantined(tmp_path)
    assert q.read_bytes().startswith(b"this is not an SQLite file")  # kept as found


async def test_corruption_found_while_running_is_recovered(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    await fill(cfg.path, 3000, 0)
    async with await SqliteBuffer.open(cfg) as buf:
        size = cfg.path.stat().st_size
        write_garbage(cfg.path, size // 2, 8192)
        # make the connection read pages from the file again instead of its cache
        await buf._writer.submit(lambda s: s.conn.execute("PRAGMA shrink_memory"), "test")
        reads = await buf.take_reads(10_000)
        st = await buf.stats()
        await buf.put_reads([tag(5000)])
    assert st.quarantined_files == 1
    assert 2000 < len(reads) < 3000
    assert st.salvaged_rows == len(reads)
    assert len(quarantined(tmp_path)) >= 1


def test_quick_check_failure_detected(tmp_path: Path) -> None:
    """The garbage test above relies on quick_check (or reading) failing: check that it does."""
    import sqlite3

    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 100,)] * 3000)
    conn.commit()
    conn.close()
    write_garbage(tmp_path / "x.db", (tmp_path / "x.db").stat().st_size // 2, 8192)
    conn = sqlite3.connect(tmp_path / "x.db")
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
        assert rows != [("ok",)]
    except sqlite3.DatabaseError:
        pass  # quick_check may raise instead of returning rows
    finally:
        conn.close()


# ----------------------------------------------------------------------------- unusable paths


async def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, path=tmp_path / "nope" / "buffer.db")
    with pytest.raises(BufferOpenError) as info:
        await SqliteBuffer.open(cfg)
    msg = str(info.value)
    assert str(cfg.path) in msg
    assert "does not exist" in msg
    assert "mkdir -p" in msg


async def test_a_file_in_place_of_the_directory(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("oops")
    cfg = make_cfg(tmp_path, path=tmp_path / "state" / "buffer.db")
    with pytest.raises(BufferOpenError, match="is not a directory"):
        await SqliteBuffer.open(cfg)


async def test_a_path_where_nothing_can_be_created(tmp_path: Path) -> None:
    # /proc accepts no new files, whoever we are (root included): SQLite cannot create it.
    cfg = make_cfg(tmp_path, path=Path("/proc/trace-edge-agent-buffer.db"))
    with pytest.raises(BufferOpenError) as info:
        await SqliteBuffer.open(cfg)
    assert "/proc/trace-edge-agent-buffer.db" in str(info.value)
    assert "buffer.path" in str(info.value)


def _can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def mounted_tmpfs(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """A tmpfs of its own, or skip where mounting is not allowed. Yields (dir, remount cmd)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if not _can_mount():
        pytest.skip("needs root and mount(8)")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                         capture_output=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        yield mnt, ["mount", "-o", "remount", str(mnt)]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def remount(mnt: Path, opts: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{opts}", str(mnt)], check=True)


async def test_read_only_filesystem_is_a_clear_error(
    mounted_tmpfs: tuple[Path, list[str]]
) -> None:
    mnt, _ = mounted_tmpfs
    remount(mnt, "ro")
    cfg = make_cfg(mnt, path=mnt / "buffer.db")
    with pytest.raises(BufferOpenError) as info:
        await SqliteBuffer.open(cfg)
    assert "read-only" in str(info.value)
    assert str(mnt) in str(info.value)


# ----------------------------------------------------------------------------- disk full


async def _set_max_pages(buf: SqliteBuffer, pages: int | None) -> None:
    def setit(s: Store) -> None:
        n = pages if pages is not None else 1_073_741_823
        if pages is not None:
            n += int(s.conn.execute("PRAGMA page_count").fetchone()[0])
        s.conn.execute(f"PRAGMA max_page_count = {n}")

    await buf._writer.submit(setit, "test", in_transaction=False)


async def test_disk_full_page_limit_keeps_running_and_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """PRAGMA max_page_count makes SQLite return SQLITE_FULL exactly as a full disk does."""
    caplog.set_level(logging.WARNING, logger="agent.buffer")
    async with await SqliteBuffer.open(make_cfg(tmp_path)) as buf:
        await buf.put_reads([tag(i) for i in range(100)])
        await buf.commit_events([], [event(1)])
        await _set_max_pages(buf, 8)
        accepted = 100
        errors: list[BufferDiskFullError] = []
        for i in range(1, 60):
            try:
                await buf.put_reads([tag(100 * i + j) for j in range(100)])
                accepted += 100
            except BufferDiskFullError as exc:
                errors.append(exc)
        assert errors
        assert isinstance(errors[0], BufferFullError)  # callers that pause on full pause here too
        assert "disk is full" in str(errors[0])
        st = await buf.stats()
        assert st.disk_full
        # claims, acks and the pipeline's small commits still work where they fit
        claimed = await buf.claim(10, lease_s=5)
        await buf.ack([c.id for c in claimed])
        assert len(await buf.take_reads(100_000)) == accepted  # nothing committed was lost
        await _set_max_pages(buf, None)  # space returns
        await buf.put_reads([tag(99_999)])
        assert not (await buf.stats()).disk_full
    assert caplog.text.count("DISK FULL") == 1  # once per change of state
    assert caplog.text.count("disk space is back") == 1


async def test_reads_come_back_after_a_full_disk_only_with_the_reserve_taken_again(
    mounted_tmpfs: tuple[Path, list[str]]
) -> None:
    """The suite found a full disk that never drained: the reserve was taken again only at
    the commit that ended the disk-full, after the first reads back had used the room it
    needed, so it was not taken, and the next full disk had nothing to release. Now the
    reserve is taken before the reads: a put that brings reads back leaves it in place."""
    mnt, _ = mounted_tmpfs
    reserve = 1024**2
    remount(mnt, "size=4m")
    cfg = make_cfg(mnt, path=mnt / "buffer.db", reserve_bytes=reserve)
    reserve_file = mnt / "buffer.db.reserve"
    async with await SqliteBuffer.open(cfg) as buf:
        assert reserve_file.stat().st_size == reserve  # taken at open
        for i in range(4000):
            try:
                await buf.put_reads([tag(50 * i + j) for j in range(50)])
            except BufferDiskFullError:
                break
        assert (await buf.stats()).disk_full
        assert not reserve_file.exists()  # released for draining
        # Room comes back: a little more than twice the reserve, what reads need again.
        st = os.statvfs(mnt)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        remount(mnt, f"size={(used + 2 * reserve + 64 * 1024) // 1024}k")
        # A put that stores more than the 64 KiB above that: taken after it, the reserve
        # would not fit any more.
        await buf.put_reads([tag(10**7 + j) for j in range(3000)])
        assert not (await buf.stats()).disk_full
        assert reserve_file.stat().st_size == reserve
        assert len(await buf.take_reads(10**6)) > 3000


async def test_real_full_filesystem(mounted_tmpfs: tuple[Path, list[str]]) -> None:
    mnt, _ = mounted_tmpfs
    cfg = make_cfg(mnt, path=mnt / "buffer.db")
    async with await SqliteBuffer.open(cfg) as buf:
        accepted: list[int] = []
        full = False
        for i in range(2000):
            try:
                await buf.put_reads([tag(50 * i + j) for j in range(50)])
            except BufferDiskFullError:
                full = True
                break
            accepted.append(i)
        assert full, "a 1 MiB filesystem must fill up"
        assert (await buf.stats()).disk_full
        remount(mnt, "size=16m")
        await buf.put_reads([tag(10**7)])
        assert not (await buf.stats()).disk_full
        assert len(await buf.take_reads(10**6)) == 50 * len(accepted) + 1
    assert ro_rows(cfg.path, "PRAGMA integrity_check") == [("ok",)]
