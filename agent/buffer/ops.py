"""The buffer's operations, each run on the writer thread inside a batch transaction."""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping, Sequence
from typing import Any, Final

from agent.buffer import chain
from agent.buffer.api import (
    BufferFullError,
    BufferStats,
    Claimed,
    OutEvent,
    ReadIdsOutOfStepError,
    StoredRead,
    claimed_row,
)
from agent.buffer.rows import READ_COLUMN_COUNT, READ_COLUMNS, ReadRow, decode_read
from agent.buffer.store import Rejected, Store, insert_alarm

_INSERT_READ = f"INSERT INTO reads ({READ_COLUMNS}) VALUES ({', '.join('?' * READ_COLUMN_COUNT)})"  # noqa: S608
_INSERT_READ_WITH_ID = f"INSERT INTO reads (id, {READ_COLUMNS}) VALUES ({', '.join('?' * (READ_COLUMN_COUNT + 1))})"  # noqa: S608, E501
_SELECT_READS = f"SELECT id, {READ_COLUMNS} FROM reads WHERE id > ? ORDER BY id LIMIT ?"  # noqa: S608
_INSERT_EVENT = "INSERT INTO outbox (kind, payload, priority, created_at_s) VALUES (?, ?, ?, ?)"


def _admit(s: Store) -> None:
    s.admit_reads()
    if s.cfg.when_full == "backpressure":
        used = s.used_bytes()
        if used >= s.cfg.max_size:
            raise Rejected(BufferFullError(
                f"buffer full: {used} of {s.cfg.max_size} bytes used (when_full: backpressure); "
                f"nothing of this call was stored; pause the readers and retry"))


def put_reads(s: Store, rows: Sequence[ReadRow]) -> int:
    """Store reads (ids from AUTOINCREMENT); returns the last read id given."""
    _admit(s)
    s.conn.executemany(_INSERT_READ, rows)
    s.inserted(reads=True)
    return last_read_id(s)


def put_batch(s: Store, first_id: int, count: int, rows: Sequence[tuple[int, ReadRow]],
              events: Sequence[OutEvent]) -> int:
    """One batch of ``count`` reads with the ids ``first_id`` .. ``first_id + count - 1`` in
    arrival order: ``rows`` (id, row) are stored as reads, the others come as their
    ``events`` (formed before this transaction with those ids; issue 12), all in this one
    transaction or nothing. The ids stay dense: a read id is what every read got, in order,
    whether it waited as a read or not. Returns the last read id."""
    _admit(s)
    expected = last_read_id(s) + 1
    if first_id != expected:
        # Only the ingest stores reads while the agent runs, so this means the file was
        # recovered (salvaged into a new one) under it: the batch is numbered again.
        raise Rejected(ReadIdsOutOfStepError(
            f"read ids out of step: the batch starts at {first_id}, the buffer's next read id "
            f"is {expected}", expected))
    if rows:
        s.conn.executemany(_INSERT_READ_WITH_ID, [(i, *row) for i, row in rows])
    if events:
        s.conn.executemany(_INSERT_EVENT, [
            (e.kind, e.payload, e.priority, e.created_at_s) for e in events])
    last = first_id + count - 1
    s.conn.execute("INSERT INTO sqlite_sequence (name, seq) SELECT 'reads', 0 WHERE NOT EXISTS "
                   "(SELECT 1 FROM sqlite_sequence WHERE name = 'reads')")
    s.conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'reads'", (last,))
    s.inserted(reads=True)
    return last


def last_read_id(s: Store) -> int:
    """The highest read id ever given (AUTOINCREMENT's own rule: sequence or largest row)."""
    row = s.conn.execute("SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = "
                         "'reads'), 0), coalesce((SELECT max(id) FROM reads), 0))").fetchone()
    return int(row[0])


def take_reads(s: Store, limit: int, after_id: int) -> list[StoredRead]:
    out: list[StoredRead] = []
    bad: list[int] = []
    for row in s.conn.execute(_SELECT_READS, (after_id, limit)).fetchall():
        try:
            out.append(StoredRead(int(row[0]), decode_read(tuple(row[1:]))))
        except (TypeError, ValueError, OverflowError):
            bad.append(int(row[0]))
    if bad:  # cannot happen with rows we wrote; never drop silently if it does
        s.conn.executemany("DELETE FROM reads WHERE id = ?", [(i,) for i in bad])
        s.count("undecodable_reads", len(bad))
        s.note("buffer: dropped %d undecodable reads, ids %s", len(bad), bad[:20])
    return out


def commit_events(s: Store, read_ids: Sequence[int], events: Sequence[OutEvent],
                  state: Mapping[str, str | None] | None) -> None:
    conn = s.conn
    if read_ids:
        conn.executemany("DELETE FROM reads WHERE id = ?", [(i,) for i in read_ids])
    if events:
        conn.executemany(_INSERT_EVENT, [
            (e.kind, e.payload, e.priority, e.created_at_s) for e in events])
        s.inserted()
    if state:
        upserts = [(k, v) for k, v in state.items() if v is not None]
        deletes = [(k,) for k, v in state.items() if v is None]
        if upserts:
            conn.executemany("INSERT INTO state (key, value) VALUES (?, ?) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value", upserts)
        if deletes:
            conn.executemany("DELETE FROM state WHERE key = ?", deletes)


def put_events(s: Store, events: Sequence[OutEvent]) -> list[int]:
    ids = [int(s.conn.execute(_INSERT_EVENT + " RETURNING id",
                              (e.kind, e.payload, e.priority, e.created_at_s)).fetchone()[0])
           for e in events]
    s.inserted()
    return ids


def load_state(s: Store, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in s.conn.execute(
            "SELECT key, value FROM state WHERE key >= ? ORDER BY key", (prefix,)).fetchall():
        if not str(key).startswith(prefix):
            break
        out[str(key)] = str(value)
    return out


_ID: Final = operator.itemgetter(0)  # of a claimed row
_PRIORITY: Final = operator.itemgetter(3)


# Rows of a frozen document go with their document only (claim_frozen). The two candidate
# sets are read each by its own index (schema V4), never by walking the rows in flight, which
# come first in claim order: rows not on lease, and leases that ran out (or end later than any
# lease granted could: the wall clock stepped back). Each is limited, then merged and ordered.
# An expired lease (publish attempted, no ack in time) counts as an attempt.
_CLAIM = (
    "UPDATE outbox SET lease_until_s = :until, "
    "attempts = attempts + (lease_until_s IS NOT NULL), "
    "last_error = CASE WHEN lease_until_s IS NOT NULL "
    "THEN 'lease expired before ack' ELSE last_error END "
    "WHERE id IN (SELECT id FROM ("
    "SELECT id, priority FROM (SELECT id, priority FROM outbox INDEXED BY outbox_fresh "
    "WHERE lease_until_s IS NULL AND id NOT IN (SELECT row_id FROM document_rows) "
    "ORDER BY priority DESC, id LIMIT :limit) "
    "UNION ALL "
    "SELECT id, priority FROM (SELECT id, priority FROM outbox INDEXED BY outbox_leased "
    "WHERE (lease_until_s <= :now OR lease_until_s > :cap) "
    "AND id NOT IN (SELECT row_id FROM document_rows) "
    "ORDER BY priority DESC, id LIMIT :limit)"
    ") ORDER BY priority DESC, id LIMIT :limit) "
    "RETURNING id, kind, payload, priority, created_at_s, attempts")


def claim(s: Store, limit: int, lease_s: float) -> list[Claimed]:
    now = s.clock()
    s.lease_max_s = max(lease_s, s.lease_max_s or 0.0)
    rows = s.conn.execute(_CLAIM, {"until": now + lease_s, "now": now, "cap": s.lease_cap(now),
                                   "limit": limit}).fetchall()
    rows.sort(key=_ID)  # RETURNING has no order: by priority (highest first), then id
    rows.sort(key=_PRIORITY, reverse=True)  # a stable sort, reversed or not
    return [claimed_row(r) for r in rows]


def ack(s: Store, ids: Sequence[int], document: int | None = None) -> int:
    """Delete delivered rows; returns how many were there. ``document``: the frozen document
    that carried exactly these rows (the usual case: one publish, one document), deleted with
    them by its id in three statements, not by each row's id (issue 12: 0.3 ms instead of 2 ms
    for 400 rows alone; 3 % of the CPU of a claim-freeze-ack loop); if its rows are not
    these, the rows are deleted one by one as without it. A document left without rows (its
    rows evicted before it was frozen) goes at the next ack by ids (status rows, alarms)."""
    if document is not None and ids:
        conn = s.conn
        count, lo, hi = conn.execute(
            "SELECT count(*), min(row_id), max(row_id) FROM document_rows WHERE document = ?",
            (document,)).fetchone()
        if count == len(ids) and lo == min(ids) and hi == max(ids):
            before = _changes(s)
            conn.execute("DELETE FROM outbox WHERE id IN "
                         "(SELECT row_id FROM document_rows WHERE document = ?)", (document,))
            n = _changes(s) - before
            conn.execute("DELETE FROM document_rows WHERE document = ?", (document,))
            conn.execute("DELETE FROM documents WHERE id = ?", (document,))
            return n
    before = _changes(s)
    s.conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
    n = _changes(s) - before
    chain.after_ack(s.conn, ids)
    return n


_UNLEASED = "(o.lease_until_s IS NULL OR o.lease_until_s <= :now OR o.lease_until_s > :cap)"


def claim_frozen(s: Store, lease_s: float, exclude: Sequence[int] = (),
                 ) -> tuple[chain.FrozenDocument, list[Claimed]] | None:
    """Lease the oldest frozen document none of whose rows is on lease, with its rows;
    ``exclude``: documents the caller has in flight (never leased again under its feet)."""
    now = s.clock()
    s.lease_max_s = max(lease_s, s.lease_max_s or 0.0)
    params = {"now": now, "cap": s.lease_cap(now), "ex": json.dumps(list(exclude))}
    sql = ("SELECT d.id FROM documents d WHERE EXISTS (SELECT 1 FROM document_rows r "  # noqa: S608
           "JOIN outbox o ON o.id = r.row_id WHERE r.document = d.id) "
           "AND NOT EXISTS (SELECT 1 FROM document_rows r JOIN outbox o ON o.id = r.row_id "
           f"WHERE r.document = d.id AND NOT {_UNLEASED}) "
           "AND d.id NOT IN (SELECT value FROM json_each(:ex)) ORDER BY d.id LIMIT 1")
    row = s.conn.execute(sql, params).fetchone()
    if row is None:
        return None
    doc = chain.load(s.conn, int(row[0]))
    rows = s.conn.execute(
        "UPDATE outbox SET lease_until_s = :until, "
        "attempts = attempts + (lease_until_s IS NOT NULL), "
        "last_error = CASE WHEN lease_until_s IS NOT NULL "
        "THEN 'lease expired before ack' ELSE last_error END "
        "WHERE id IN (SELECT row_id FROM document_rows WHERE document = :doc) "
        "RETURNING id, kind, payload, priority, created_at_s, attempts",
        {"until": now + lease_s, "doc": doc.id}).fetchall()
    rows.sort(key=lambda r: r[0])
    return doc, [claimed_row(r) for r in rows]


def claim_next(s: Store, limit: int, lease_s: float, exclude: Sequence[int],
               ) -> tuple[chain.FrozenDocument | None, list[Claimed]]:
    """A frozen document to resend (with its rows) if one is available, else rows to claim."""
    got = claim_frozen(s, lease_s, exclude)
    if got is not None:
        return got
    return None, claim(s, limit, lease_s)


def freeze(s: Store, ids: Sequence[int], build: chain.Build,
           sign: chain.Sign | None) -> chain.FrozenDocument:
    present = [int(r[0]) for r in s.conn.execute(
        f"SELECT id FROM outbox WHERE id IN ({', '.join('?' * len(ids))}) ORDER BY id",  # noqa: S608
        list(ids)).fetchall()]
    return chain.freeze(s.conn, present, created_at_s=s.clock(),
                        new_chain_id=chain.new_chain_id(s.rng.getrandbits(128)),
                        build=build, sign=sign)


def unfreeze(s: Store, ids: Sequence[int], why: str) -> None:
    """The documents carrying these rows will never be sent (too large after freezing): a gap
    names their seqs; the rows stay on lease, free to be frozen again in smaller documents."""
    chain.drop(s.conn, chain.documents_of(s.conn, ids), gap={"reason": "superseded",
                                                             "detail": why})


def chain_head(s: Store) -> chain.ChainHead | None:
    return chain.head(s.conn)


def release(s: Store, ids: Sequence[int], error: str | None) -> None:
    s.conn.executemany(
        "UPDATE outbox SET lease_until_s = NULL, attempts = attempts + 1, "
        "last_error = coalesce(?, last_error) WHERE id = ? AND lease_until_s IS NOT NULL",
        [(error, i) for i in ids])


def dead_letter(s: Store, ids: Sequence[int], reason: str) -> int:
    """Move outbox rows to dead_letters; returns how many moved.

    At ``dead_letters_max`` an alarm row is queued (once per crossing) and the configured
    policy applies (issue 13: no silent deletion):

    * ``keep``: only what fits moves; the rest stay in the outbox, held back for one lease
      period (``lease_until_s`` in the future, so ``claim`` skips them) and then retried:
      backpressure on the refused topic, nothing deleted;
    * ``drop_oldest``: all move and the oldest dead letters are deleted (counted, logged).
    """
    conn = s.conn
    now = s.clock()
    count = int(conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])
    move = list(ids)
    held: list[int] = []
    keep = s.cfg.dead_letter_policy == "keep"
    if keep and count + len(move) > s.dead_letters_max:
        room = max(0, s.dead_letters_max - count)
        move, held = move[:room], move[room:]
    conn.executemany(
        "INSERT OR REPLACE INTO dead_letters (id, kind, payload, priority, created_at_s, "
        "attempts, last_error, reason, dead_at_s) SELECT id, kind, payload, priority, "
        "created_at_s, attempts, last_error, ?, ? FROM outbox WHERE id = ?",
        [(reason, now, i) for i in move])
    conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in move])
    # A frozen document refused for good will never be delivered: its seq becomes a gap the
    # next document explains; rows held back are untied and go again in a new document.
    frozen = chain.documents_of(conn, ids)
    chain.drop(conn, frozen, gap={"reason": "dead-letter", "detail": reason})
    if not frozen:
        # Events refused before any document carried them (too large to go at all): the
        # next document still says they are missing, by outbox id.
        events = [int(r[0]) for r in conn.execute(
            f"SELECT id FROM dead_letters WHERE kind = 'event' AND id IN "  # noqa: S608
            f"({', '.join('?' * len(move))}) ORDER BY id", list(move)).fetchall()] if move else []
        if events:
            chain.add_gap(conn, {"reason": "dead-letter", "what": "events",
                                 "count": len(events), "ids": [events[0], events[-1]],
                                 "detail": reason})
    if held:
        hold_s = s.lease_max_s or s.cfg.lease_s
        conn.executemany(
            # the next claim counts the attempt (an expired lease is one)
            "UPDATE outbox SET lease_until_s = ?, last_error = ? WHERE id = ?",
            [(now + hold_s, f"dead letters full: {reason}", i) for i in held])
        s.count("dead_letters_held", len(held))  # the forwarder logs each one
    n = count + len(move)
    excess = n - s.dead_letters_max
    if excess > 0:
        old = [r[0] for r in conn.execute(
            "SELECT id FROM dead_letters ORDER BY id LIMIT ?", (excess,)).fetchall()]
        conn.execute("DELETE FROM dead_letters WHERE id BETWEEN ? AND ?", (old[0], old[-1]))
        s.count("dropped_dead_letters", len(old))
        s.note("buffer: more than %d dead letters (dead_letter_policy drop_oldest): dropped "
               "the oldest %d, ids %d..%d", s.dead_letters_max, len(old), old[0], old[-1])
    full = bool(held) or excess > 0 or n >= s.dead_letters_max
    if full and not s.dead_letters_full_alarmed:
        s.dead_letters_full_alarmed = True
        alarm = {"type": "dead_letters_full", "max": s.dead_letters_max,
                 "policy": s.cfg.dead_letter_policy, "reason": reason,
                 "detail": ("new refusals stay in the outbox and are retried" if keep else
                            "the oldest dead letters are deleted to make room") +
                           "; fix the cause (broker ACL?), then `edge-agent buffer "
                           "dead-letters replay --all` (docs/buffer.md)"}
        insert_alarm(conn, alarm, now)
        s.note("buffer: ALARM dead letters reached their cap of %d (policy %s); fix the "
               "cause, then `edge-agent buffer dead-letters replay --all`", s.dead_letters_max,
               s.cfg.dead_letter_policy)
    elif not full:
        s.dead_letters_full_alarmed = False
    return len(move)


def stats(s: Store) -> BufferStats:
    conn = s.conn
    now = s.clock()

    def one(sql: str, params: Any = ()) -> Any:
        row = conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    oldest_row = conn.execute("SELECT id, created_at_s FROM outbox ORDER BY id LIMIT 1").fetchone()
    oldest = None if oldest_row is None else (
        float(oldest_row[1]) + s.step_s("outbox", int(oldest_row[0])))
    c = s.counter
    return BufferStats(
        generation=s.generation,
        reads_pending=int(one("SELECT count(*) FROM reads")),
        events_pending=int(one("SELECT count(*) FROM outbox")),
        events_leased=int(one("SELECT count(*) FROM outbox WHERE lease_until_s > ? "
                              "AND lease_until_s <= ?", (now, s.lease_cap(now)))),
        oldest_event_age_s=None if oldest is None else max(0.0, now - float(oldest)),
        size_bytes=s.file_size(),
        dropped_total=s.dropped_total(),
        dead_letters=int(one("SELECT count(*) FROM dead_letters")),
        quarantined_files=c("quarantined_files"),
        disk_full=s.disk_full,
        transactions=s.transactions,
        used_bytes=s.used_bytes(),
        max_size=s.cfg.max_size,
        dropped_reads=c("dropped_reads"),
        dropped_events=c("dropped_events"),
        expired=c("expired_events") + c("expired_reads"),
        salvaged_rows=c("salvaged_rows"),
        dead_letters_max=s.dead_letters_max,
        dead_letters_held=c("dead_letters_held"),
    )


def _changes(s: Store) -> int:
    return int(s.conn.execute("SELECT total_changes()").fetchone()[0])
