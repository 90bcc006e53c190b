"""The buffer across steps of the wall clock (real SQLite files, injected wall + elapsed)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent.buffer.sqlite import SqliteBuffer
from tests.support.buffer_helpers import T0, FakeClock, event, make_cfg, ro_rows, tag

H = 3600.0


class Clocks:
    def __init__(self) -> None:
        self.wall = FakeClock(T0)
        self.elapsed = 500.0

    def passes(self, s: float) -> None:
        self.wall.advance(s)
        self.elapsed += s

    def step(self, delta: float) -> None:
        self.wall.advance(delta)

    async def open(self, tmp_path: Path, **cfg: float) -> SqliteBuffer:
        return await SqliteBuffer.open(make_cfg(tmp_path, **cfg), clock=self.wall,
                                       elapsed=lambda: self.elapsed)


async def test_a_forward_step_does_not_expire_the_backlog(tmp_path: Path) -> None:
    c = Clocks()
    buf = await c.open(tmp_path, max_age_s=H)
    await buf.commit_events([], [event(i, at=c.wall.now) for i in range(10)])
    await buf.put_reads([tag(0, at=datetime.fromtimestamp(c.wall.now, UTC))])  # synced read
    c.passes(60)
    c.step(3 * H)  # NTP: the clock was 3 h slow
    c.passes(2)
    await buf.commit_events([], [event(10, at=c.wall.now)])
    st = await buf.stats()
    assert st.expired == 0
    assert st.events_pending == 11
    assert st.reads_pending == 1
    assert 61 <= (st.oldest_event_age_s or 0) <= 63  # its real age, not 3 h
    assert ro_rows(tmp_path / "buffer.db", "SELECT value FROM meta WHERE key = 'clock_steps'")
    await buf.aclose()

    buf = await c.open(tmp_path, max_age_s=H)  # a restart: the step log is in the file
    c.passes(1)
    await buf.commit_events([], [])
    assert (await buf.stats()).expired == 0
    c.passes(H - 60)  # now the first ten (and the read) really are over an hour old
    await buf.commit_events([], [])
    st = await buf.stats()
    assert st.expired == 11
    assert [r.payload for r in await buf.claim(100, lease_s=60)] == [event(10).payload]
    await buf.aclose()


async def test_the_step_log_is_forgotten_once_no_row_predates_it(tmp_path: Path) -> None:
    c = Clocks()
    buf = await c.open(tmp_path)
    await buf.commit_events([], [event(1, at=c.wall.now)])
    c.passes(1)
    c.step(-2 * H)
    c.passes(1)
    rows = await buf.claim(10, lease_s=60)
    await buf.ack([r.id for r in rows])
    await buf.commit_events([], [event(2, at=c.wall.now)])
    await buf.stats()
    assert ro_rows(tmp_path / "buffer.db",
                   "SELECT value FROM meta WHERE key = 'clock_steps'") == [("[[-7200.0, 1, 0]]",)]
    c.passes(2)  # the next age sweep prunes it (max_age unset: only on a step)
    await buf.aclose()
    buf = await c.open(tmp_path, max_age_s=H)
    c.passes(2)
    await buf.commit_events([], [])
    assert ro_rows(tmp_path / "buffer.db",
                   "SELECT value FROM meta WHERE key = 'clock_steps'") == []
    await buf.aclose()


async def test_a_lease_after_a_backward_step_is_not_stuck_for_hours(tmp_path: Path) -> None:
    c = Clocks()
    async with await c.open(tmp_path) as buf:
        await buf.commit_events([], [event(1, at=c.wall.now)])
        (row,) = await buf.claim(10, lease_s=60)
        c.passes(10)
        c.step(-3 * H)
        c.passes(1)
        assert await buf.claim(10, lease_s=60) == []  # still in flight: moved with the clock
        assert (await buf.stats()).events_leased == 1
        c.passes(50)
        (again,) = await buf.claim(10, lease_s=60)  # 61 s after the claim: expired
        assert again.id == row.id


async def test_a_lease_after_a_forward_step_keeps_its_real_length(tmp_path: Path) -> None:
    c = Clocks()
    async with await c.open(tmp_path) as buf:
        await buf.commit_events([], [event(1, at=c.wall.now)])
        await buf.claim(10, lease_s=60)
        c.passes(10)
        c.step(3 * H)
        c.passes(1)
        assert await buf.claim(10, lease_s=60) == []  # not expired by the step
        c.passes(50)
        assert len(await buf.claim(10, lease_s=60)) == 1


async def test_an_unseen_backward_step_caps_leases_at_the_longest_granted(tmp_path: Path) -> None:
    """No elapsed clock to compare with (or the step fell between two runs): a lease ending
    further ahead than any lease granted is expired."""
    clock = FakeClock(T0)
    async with await SqliteBuffer.open(make_cfg(tmp_path), clock=clock) as buf:
        await buf.commit_events([], [event(1, at=clock.now)])
        (row,) = await buf.claim(10, lease_s=60)
        clock.now = T0 - 3 * H
        assert (await buf.stats()).events_leased == 0
        (again,) = await buf.claim(10, lease_s=60)
        assert again.id == row.id
        assert again.attempts == 1
