"""Technician tools: stats, export and purge over a path, next to a running agent."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from agent.buffer import tools
from agent.buffer.api import PRIORITY_ALARM
from agent.buffer.sqlite import SqliteBuffer
from tests.support.buffer_helpers import T0, FakeClock, event, make_cfg, tag


async def _filled(tmp_path: Path, clock: FakeClock) -> SqliteBuffer:
    buf = await SqliteBuffer.open(make_cfg(tmp_path), clock=clock)
    await buf.put_reads([tag(i) for i in range(7)])
    await buf.commit_events([], [event(i, at=T0 - 100 + i) for i in range(5)])
    await buf.put_events([event(99, priority=PRIORITY_ALARM, kind="alarm")])
    claimed = await buf.claim(2, lease_s=60)  # the alarm first, then event 0
    await buf.dead_letter([claimed[1].id], "rejected: too large")
    return buf


async def test_stats_next_to_a_running_agent(tmp_path: Path) -> None:
    clock = FakeClock()
    buf = await _filled(tmp_path, clock)
    try:
        st = tools.stats(tmp_path / "buffer.db", now=T0)
        assert st.generation == buf.generation
        assert (st.reads_pending, st.events_pending, st.events_leased) == (7, 5, 1)
        assert st.dead_letters == 1
        assert st.oldest_event_age_s == pytest.approx(99.0)  # event 1 (event 0 is dead)
        assert st.size_bytes > 0
        assert st.dropped_total == 0
        assert st.quarantined_files == []
        assert st.as_dict()["reads_pending"] == 7
        await buf.put_reads([tag(100)])  # the agent is not disturbed
        assert tools.stats(tmp_path / "buffer.db").reads_pending == 8
    finally:
        await buf.aclose()


async def test_export_json_lines(tmp_path: Path) -> None:
    buf = await _filled(tmp_path, FakeClock())
    try:
        out = io.StringIO()
        n = tools.export(tmp_path / "buffer.db", out, dead_letters=True)
    finally:
        await buf.aclose()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert n == len(lines) == 6
    outbox = [x for x in lines if x["table"] == "outbox"]
    dead = [x for x in lines if x["table"] == "dead_letters"]
    assert [x["payload"] for x in outbox] == [event(i).payload for i in (1, 2, 3, 4)] + [
        event(99).payload]  # id order
    assert dead[0]["reason"] == "rejected: too large"
    assert dead[0]["payload"] == event(0).payload
    only_outbox = io.StringIO()
    assert tools.export(tmp_path / "buffer.db", only_outbox) == 5


async def test_purge_dry_run_then_confirmed(tmp_path: Path) -> None:
    buf = await _filled(tmp_path, FakeClock())
    try:
        db = tmp_path / "buffer.db"
        dry = tools.purge(db, confirm=False, dead_letters=True)
        assert (dry.done, dry.events, dry.dead_letters, dry.reads) == (False, 5, 1, 0)
        assert tools.stats(db).events_pending == 5  # nothing deleted
        done = tools.purge(db, confirm=True, dead_letters=True)
        assert (done.done, done.events, done.dead_letters) == (True, 5, 1)
        st = tools.stats(db)
        assert (st.events_pending, st.dead_letters, st.reads_pending) == (0, 0, 7)
        assert st.counters["purged_outbox"] == 5
        assert await buf.claim(10, lease_s=5) == []  # the running agent sees it
        await buf.commit_events([], [event(7)])
        assert len(await buf.claim(10, lease_s=5)) == 1
    finally:
        await buf.aclose()


def test_tools_explain_a_missing_or_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(tools.ToolError, match="no such buffer file"):
        tools.stats(tmp_path / "nope.db")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(tools.ToolError, match=r"junk\.db"):
        tools.stats(tmp_path / "junk.db")
    with pytest.raises(tools.ToolError, match=r"junk\.db"):
        tools.export(tmp_path / "junk.db", io.StringIO())


async def test_stats_of_a_file_left_by_a_crash(tmp_path: Path) -> None:
    """-wal and -shm left behind (no clean close): read-only opening still works."""
    buf = await SqliteBuffer.open(make_cfg(tmp_path))
    await buf.put_reads([tag(i) for i in range(3)])
    # no aclose: the connection stays open, as a running or killed agent would leave it
    st = tools.stats(tmp_path / "buffer.db")
    assert st.reads_pending == 3
    await buf.aclose()
    assert tools.stats(tmp_path / "buffer.db").reads_pending == 3
