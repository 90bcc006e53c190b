"""The buffer's document chain (schema v3, docs/provenance.md): what the buffer drops is a gap
the next document reports; rows of a frozen document are never dropped; a chain says why it
began (first start, a new buffer file, salvaged from a corrupt one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.buffer.chain import ChainLink
from agent.buffer.sqlite import SqliteBuffer
from tests.buffer.test_buffer_faults import quarantined, write_garbage
from tests.support.buffer_helpers import event, make_cfg, remove_db, ro_rows


def build(link: ChainLink) -> bytes:
    """A stand-in document: only the chain fields (the real one is agent.uplink.provenance)."""
    return json.dumps({"tea:chainId": link.chain_id, "tea:seq": link.seq,
                       "tea:prevHash": link.prev_hash, "tea:chainStart": link.chain_start,
                       "tea:gaps": list(link.gaps)}).encode()


async def _freeze_some(buf: SqliteBuffer, n: int) -> dict[str, Any]:
    rows = await buf.claim(n, lease_s=60)
    doc = await buf.freeze([r.id for r in rows], build)
    body: dict[str, Any] = json.loads(doc.payload)
    return body


async def test_eviction_is_a_gap_and_frozen_rows_stay(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, max_size=600 * 1024)
    async with await SqliteBuffer.open(cfg) as buf:
        await buf.commit_events([], [event(i) for i in range(20)])
        first = await _freeze_some(buf, 20)
        assert first["tea:seq"] == 1
        for i in range(20, 6000, 500):  # far more than max_size: the oldest go
            await buf.commit_events([], [event(j) for j in range(i, i + 500)])
        st = await buf.stats()
        assert st.dropped_events > 0
        frozen = ro_rows(cfg.path, "SELECT count(*) FROM outbox WHERE id IN "
                         "(SELECT row_id FROM document_rows)")
        assert frozen == [(20,)]  # the frozen document's rows were not evicted
        body = await _freeze_some(buf, 5)
    gaps = body["tea:gaps"]
    assert gaps
    assert {g["reason"] for g in gaps} == {"evicted"}
    assert sum(g["count"] for g in gaps) == st.dropped_events
    assert all(g["what"] == "events" and g["ids"][0] <= g["ids"][1] for g in gaps)
    assert all(g["firstTime"] <= g["lastTime"] for g in gaps)


async def test_expiry_is_a_gap_and_frozen_rows_stay(tmp_path: Path) -> None:
    now = [1_000_000.0]
    cfg = make_cfg(tmp_path, max_age_s=60)
    async with await SqliteBuffer.open(cfg, clock=lambda: now[0]) as buf:
        await buf.commit_events([], [event(i, at=now[0]) for i in range(10)])
        await _freeze_some(buf, 3)
        await buf.release(list(range(1, 4)))  # not delivered: the document stays frozen
        now[0] += 3600
        await buf.commit_events([], [event(100, at=now[0])])
        st = await buf.stats()
        assert st.expired == 7
        got = await buf.claim_frozen(lease_s=60)
        assert got is not None
        assert [r.id for r in got[1]] == [1, 2, 3]
        body = await _freeze_some(buf, 5)
    (gap,) = body["tea:gaps"]
    assert (gap["reason"], gap["count"], gap["ids"]) == ("expired", 7, [4, 10])


async def test_a_new_buffer_file_and_a_salvaged_one_say_why_the_chain_began(
    tmp_path: Path,
) -> None:
    cfg = make_cfg(tmp_path)
    async with await SqliteBuffer.open(cfg) as buf:
        await buf.commit_events([], [event(i) for i in range(3)])
        assert (await _freeze_some(buf, 1))["tea:chainStart"] == {"reason": "first-start"}
        old_gen = buf.generation
    remove_db(cfg.path)  # the ledger beside it remembers the old file
    async with await SqliteBuffer.open(cfg) as buf:
        await buf.commit_events([], [event(i) for i in range(1000)])
        body = await _freeze_some(buf, 1)
        assert body["tea:chainStart"] == {"reason": "new-buffer", "previousGeneration": old_gen}
        head = await buf.chain_head()
        assert head is not None
    write_garbage(cfg.path, cfg.path.stat().st_size // 3, 8192)
    async with await SqliteBuffer.open(cfg) as buf:
        assert quarantined(tmp_path)
        body = await _freeze_some(buf, 1)
    start = body["tea:chainStart"]
    assert start["reason"] == "salvaged"
    assert start["previousChain"]["chainId"] == head.chain_id
    assert body["tea:seq"] == 1
    assert body["tea:chainId"] != head.chain_id


async def test_a_document_whose_rows_vanished_is_forgotten_at_the_next_ack(
    tmp_path: Path,
) -> None:
    cfg = make_cfg(tmp_path)
    async with await SqliteBuffer.open(cfg) as buf:
        await buf.commit_events([], [event(i) for i in range(2)])
        rows = await buf.claim(2, lease_s=60)
        orphan = await buf.freeze([999], build)  # its row was evicted under its lease
        doc = await buf.freeze([rows[0].id], build)
        assert (orphan.seq, doc.seq) == (1, 2)
        assert orphan.row_ids == ()
        await buf.ack([rows[0].id])
    assert ro_rows(cfg.path, "SELECT count(*) FROM documents") == [(0,)]


async def test_an_ack_by_document_deletes_its_rows_and_it_and_only_when_they_match(
    tmp_path: Path,
) -> None:
    """The forwarder acks a delivered document by its id with its rows (one statement for the
    rows, issue 12); ids that are not exactly the document's rows go the row-by-row way."""
    cfg = make_cfg(tmp_path)
    async with await SqliteBuffer.open(cfg) as buf:
        await buf.commit_events([], [event(i) for i in range(7)])
        rows = await buf.claim(7, lease_s=60)
        ids = [r.id for r in rows]
        one = await buf.freeze(ids[:4], build)
        two = await buf.freeze(ids[4:], build)
        await buf.ack(ids[:4], document=one.id)
        assert ro_rows(cfg.path, "SELECT id FROM documents") == [(two.id,)]
        assert ro_rows(cfg.path, "SELECT id FROM outbox ORDER BY id") == [(i,) for i in ids[4:]]
        await buf.ack(ids[4:6], document=two.id)  # not all of its rows: by the rows' ids
        assert ro_rows(cfg.path, "SELECT id FROM outbox") == [(ids[6],)]
        assert ro_rows(cfg.path, "SELECT row_id, document FROM document_rows") == [
            (ids[6], two.id)]
        await buf.ack(ids[6:], document=two.id)
        assert (await buf.stats()).events_pending == 0
    for table in ("documents", "document_rows", "outbox"):
        assert ro_rows(cfg.path, f"SELECT count(*) FROM {table}") == [(0,)]


async def test_rows_a_corrupt_file_could_not_give_back_are_declared_in_the_new_chain(
    tmp_path: Path,
) -> None:
    """Issue 14 item 3: rows lost beyond salvage are a gap the new chain's first document
    carries (by id range), like evicted or expired ones."""
    import json

    from agent.buffer.sqlite import SqliteBuffer
    from tests.buffer.test_buffer_faults import fill, write_garbage
    from tests.support.buffer_helpers import make_cfg, ro_rows

    cfg = make_cfg(tmp_path)
    await fill(cfg.path, 3000, 1000)
    write_garbage(cfg.path, cfg.path.stat().st_size // 3, 8192)
    async with await SqliteBuffer.open(cfg) as buf:
        st = await buf.stats()
    assert st.quarantined_files == 1
    (value,) = ro_rows(cfg.path, "SELECT value FROM meta WHERE key = 'chain_gaps'")[0]
    gaps = json.loads(value)
    lost = [g for g in gaps if g["reason"] == "corrupt-buffer"]
    assert lost, gaps
    assert all(g["what"] in ("reads", "events", "rows") and g["count"] > 0 for g in lost)
    ranges = [g for g in lost if "ids" in g]
    assert ranges  # this damage makes a range unreadable (the salvage tests show which)
    assert all(g["ids"][0] <= g["ids"][1] for g in ranges)
