"""Keeping the buffer bounded: eviction at max_size, expiry at max_age, giving space back.

Everything here runs on the writer thread inside the batch's transaction (except ``reclaim``,
which runs right after a commit), so a drop is committed together with the rows that caused it.
Priority rows (status, alarms: ``priority > 0``) are never dropped here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.buffer.schema import Conn

# A lease further ahead than the longest lease ever granted (``:lease_cap``) was granted before
# the wall clock stepped back: it is treated as expired, not held for hours.
_UNLEASED = "(lease_until_s IS NULL OR lease_until_s <= :now OR lease_until_s > :lease_cap)"
# Rows of a frozen document are never dropped: their bytes are signed and chained already
# (docs/provenance.md); frozen documents are few (the in-flight window).
_UNFROZEN = "id NOT IN (SELECT row_id FROM document_rows)"
NO_CAP = 1e300

# What full eviction drops, in this order, each oldest (lowest id) first:
#  1. bulk events not on lease (the oldest observations: the uplink is what is behind),
#  2. reads still waiting for the pipeline,
#  3. dead letters,
#  4. bulk events on lease (in flight to the broker right now).
EVICTION_ORDER: tuple[tuple[str, str, str], ...] = (
    ("events", "outbox", f"priority = 0 AND {_UNLEASED} AND {_UNFROZEN}"),
    ("reads", "reads", "1"),
    ("dead_letters", "dead_letters", "1"),
    ("events", "outbox", f"priority = 0 AND {_UNFROZEN}"),
)
LOW_WATER = 0.95  # eviction frees down to this fraction of max_size, so it does not run per row
_MIN_CHUNK = 32
_MAX_CHUNK = 5000
_EXPIRE_CHUNK = 1000
RECLAIM_KEEP_PAGES = 256  # free pages kept for reuse rather than given back to the filesystem


@dataclass(frozen=True, slots=True)
class Dropped:
    what: str  # "events" | "reads" | "dead_letters"
    reason: str  # "full" | "max_age"
    count: int
    first_id: int
    last_id: int
    # earliest / latest read (reads) or event time (events) dropped, ISO-8601 UTC; for the
    # gap the next document reports (docs/provenance.md)
    first_time: str | None = None
    last_time: str | None = None


# What "time" means per table, as SQL giving ISO-8601 text that sorts in time order.
_TIME_SQL = {
    # a payload that is not JSON (never ours, but the file is not ours alone) has no time
    "outbox": "CASE WHEN json_valid(payload) THEN json_extract(payload, '$.eventTime') END",
    "reads": "strftime('%Y-%m-%dT%H:%M:%fZ', read_at_us / 1000000.0, 'unixepoch')",
}


def _span(conn: Conn, table: str, where: str, params: dict[str, Any],
          acc: tuple[str | None, str | None]) -> tuple[str | None, str | None]:
    """(min, max) time of the rows ``where`` selects, merged into ``acc``."""
    col = _TIME_SQL.get(table)
    if col is None:
        return acc
    lo, hi = conn.execute(f"SELECT min({col}), max({col}) FROM {table} WHERE {where}",  # noqa: S608
                          params).fetchone()
    first = min((t for t in (acc[0], lo) if t is not None), default=None)
    last = max((t for t in (acc[1], hi) if t is not None), default=None)
    return first, last


def page_counts(conn: Conn) -> tuple[int, int]:
    """(page_count, freelist_count) as the current transaction sees them."""
    row = conn.execute("SELECT * FROM pragma_page_count(), pragma_freelist_count()").fetchone()
    return int(row[0]), int(row[1])


def used_bytes(conn: Conn, page_size: int) -> int:
    pages, free = page_counts(conn)
    return (pages - free) * page_size


def evict(conn: Conn, *, max_size: int, page_size: int, now: float,
          lease_cap: float = NO_CAP) -> list[Dropped]:
    """Drop the oldest evictable rows until used bytes are below LOW_WATER * max_size."""
    used = used_bytes(conn, page_size)
    if used <= max_size:
        return []
    target = int(max_size * LOW_WATER)
    per_row = 256.0  # bytes freed per row dropped, re-estimated as we go
    out: list[Dropped] = []
    for what, table, pred in EVICTION_ORDER:
        first = last = -1
        count = 0
        times: tuple[str | None, str | None] = (None, None)
        while used > target:
            n = int(min(_MAX_CHUNK, max(_MIN_CHUNK, (used - target) / per_row + 1)))
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM {table} WHERE {pred} ORDER BY id LIMIT :n",  # noqa: S608
                {"now": now, "lease_cap": lease_cap, "n": n}).fetchall()]
            if not ids:
                break
            chunk = {"now": now, "lease_cap": lease_cap, "lo": ids[0], "hi": ids[-1]}
            times = _span(conn, table, f"{pred} AND id BETWEEN :lo AND :hi", chunk, times)
            conn.execute(f"DELETE FROM {table} WHERE {pred} AND id BETWEEN :lo AND :hi",  # noqa: S608
                         chunk)
            first = ids[0] if first < 0 else first
            last = ids[-1]
            count += len(ids)
            after = used_bytes(conn, page_size)
            if after < used:
                per_row = max(16.0, (used - after) / len(ids))
            used = after
        if count:
            out.append(Dropped(what, "full", count, first, last, *times))
        if used <= target:
            break
    return out


def expire(conn: Conn, *, now: float, max_age_s: float, lease_cap: float = NO_CAP,
           step_s: Callable[[str, int], float] | None = None) -> list[Dropped]:
    """Drop bulk events and (clock-synced) reads older than max_age_s, oldest id first.

    Age is looked at in id order: each round takes the oldest rows and drops the expired ones
    among them, and stops at a round with none expired. ``step_s(table, id)`` is what to add to
    a row's time to put it on the current clock (rows stored before a step of the wall clock).
    """
    cutoff = now - max_age_s
    plans = (
        ("events", "outbox", f"priority = 0 AND {_UNLEASED} AND {_UNFROZEN}", "created_at_s",
         1.0),
        ("reads", "reads", "clock_synced = 1", "read_at_us", 1_000_000.0),
    )
    out: list[Dropped] = []
    for what, table, pred, col, unit in plans:
        while True:
            rows = conn.execute(
                f"SELECT id, {col} FROM {table} WHERE {pred} ORDER BY id LIMIT :n",  # noqa: S608
                {"now": now, "lease_cap": lease_cap, "n": _EXPIRE_CHUNK}).fetchall()
            if step_s is None:
                old = [r[0] for r in rows if r[1] < cutoff * unit]
            else:
                old = [r[0] for r in rows if r[1] + step_s(table, r[0]) * unit < cutoff * unit]
            if not old:
                break
            times = _span(conn, table, f"id IN ({', '.join(map(str, old))})", {}, (None, None))
            conn.executemany(f"DELETE FROM {table} WHERE id = ?", [(i,) for i in old])  # noqa: S608
            out.append(Dropped(what, "max_age", len(old), old[0], old[-1], *times))
            if len(rows) < _EXPIRE_CHUNK:
                break
    return out


def reclaim(conn: Conn) -> int:
    """Give free pages back to the filesystem when they are many; return the pages freed.

    Runs outside a transaction. ``PRAGMA incremental_vacuum(N)`` must go through executescript
    (or be stepped to the end): a plain execute frees a single page.
    """
    pages, free = page_counts(conn)
    if free <= RECLAIM_KEEP_PAGES or free * 4 < pages:
        return 0
    n = free - RECLAIM_KEEP_PAGES
    conn.executescript(f"PRAGMA incremental_vacuum({n});")
    return n
