"""Dead letters at their cap (issue 13 item 2): an alarm once per crossing, and the configured
policy: keep (new refusals held in the outbox, retried after a lease period, nothing deleted)
or drop_oldest (declared: counted). Replay puts them back with their ids and payloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.buffer import tools
from agent.buffer.sqlite import SqliteBuffer
from tests.support.buffer_helpers import FakeClock, event, make_cfg, ro_rows


def _alarms(db: Path) -> list[dict[str, object]]:
    return [json.loads(p) for (p,) in ro_rows(db, "SELECT payload FROM outbox WHERE kind = "
                                                  "'alarm' ORDER BY id")]


async def test_keep_holds_new_refusals_in_the_outbox_and_alarms_once(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "buffer.db"
    cfg = make_cfg(tmp_path, dead_letters_max=2, dead_letter_policy="keep", lease_s=10)
    async with await SqliteBuffer.open(cfg, clock=clock) as buf:
        await buf.commit_events([], [event(i) for i in range(5)])
        c = await buf.claim(10, lease_s=10)
        assert await buf.dead_letter([c[0].id, c[1].id], "0x87 Not authorized") == 2
        assert await buf.dead_letter([c[2].id], "0x87 Not authorized") == 0  # full: held
        assert await buf.dead_letter([c[3].id], "0x87 Not authorized") == 0
        st = await buf.stats()
        assert (st.dead_letters, st.dead_letters_max, st.dead_letters_held) == (2, 2, 2)
        assert st.dropped_total == 0  # nothing deleted
        (alarm,) = _alarms(db)  # once per crossing, not per refusal
        assert alarm["type"] == "dead_letters_full"
        assert alarm["policy"] == "keep"
        # held: not claimable during the hold, then retried (with one more attempt)
        claimed = [x.id for x in await buf.claim(10, lease_s=10)]
        assert c[2].id not in claimed
        assert c[3].id not in claimed
        clock.advance(11)
        again = {x.id: x.attempts for x in await buf.claim(10, lease_s=10)}
        assert again[c[2].id] == 1
        assert again[c[3].id] == 1


async def test_drop_oldest_is_declared_counted_and_alarmed(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    cfg = make_cfg(tmp_path, dead_letters_max=2, dead_letter_policy="drop_oldest")
    async with await SqliteBuffer.open(cfg, clock=FakeClock()) as buf:
        await buf.commit_events([], [event(i) for i in range(3)])
        c = await buf.claim(10, lease_s=10)
        assert await buf.dead_letter([x.id for x in c], "poison") == 3
        st = await buf.stats()
        assert (st.dead_letters, st.dropped_total) == (2, 1)
        (alarm,) = _alarms(db)
        assert alarm["policy"] == "drop_oldest"


async def test_replay_restores_ids_and_payloads(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    async with await SqliteBuffer.open(make_cfg(tmp_path), clock=FakeClock()) as buf:
        await buf.commit_events([], [event(i) for i in range(3)])
        c = await buf.claim(10, lease_s=10)
        await buf.dead_letter([c[0].id, c[2].id], "0x87 Not authorized")
    listed = tools.dead_letters(db)
    assert [d.id for d in listed] == [c[0].id, c[2].id]
    assert listed[0].event_ids == [f"ni:///sha-256;{0:064x}"]
    assert tools.dead_letter(db, c[2].id).payload == c[2].payload
    assert tools.replay(db, [c[2].id]) == 1
    assert ro_rows(db, "SELECT id, payload, attempts FROM outbox WHERE id = ?", (c[2].id,)) == [
        (c[2].id, c[2].payload, 0)]
    assert tools.replay(db, None) == 1
    assert tools.dead_letters(db) == []
    assert tools.stats(db).counters["replayed_dead_letters"] == 2
    with pytest.raises(tools.ToolError, match="no dead letter with id 999"):
        tools.replay(db, [999])
