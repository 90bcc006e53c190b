"""Look into (and, on request, empty) a buffer file from outside the agent.

Minimal implementations for ``edge-agent buffer stats|export|purge`` (agent/buffer/tools.py does
not exist on main). Reads use a read-only connection: WAL readers never block the agent's
writer. ``purge`` writes; the CLI refuses it while the agent runs unless forced.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

DROP_COUNTERS = ("dropped_events", "dropped_reads", "dropped_dead_letters", "expired_events",
                 "expired_reads", "undecodable_reads")


class BufferFileError(Exception):
    """The file is missing or not a buffer; the message says what to do."""


def _connect_ro(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise BufferFileError(f"no buffer file at {path} (the agent creates it at its first "
                              "start; check buffer.path)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        conn.execute("SELECT count(*) FROM outbox").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BufferFileError(f"{path} is not a readable buffer file: {exc}") from exc
    return conn


def size_on_disk(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            total += os.path.getsize(f"{path}{suffix}")
    return total


def buffer_stats(path: Path, *, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    conn = _connect_ro(path)
    try:
        def one(sql: str, params: tuple[Any, ...] = ()) -> Any:
            row = conn.execute(sql, params).fetchone()
            return None if row is None else row[0]

        counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
        oldest = one("SELECT min(created_at_s) FROM outbox")
        oldest_read = one("SELECT min(read_at_us) FROM reads")
        return {
            "path": str(path),
            "generation": one("SELECT value FROM meta WHERE key = 'generation'"),
            "readsPending": int(one("SELECT count(*) FROM reads")),
            "depth": int(one("SELECT count(*) FROM outbox")),
            "leased": int(one("SELECT count(*) FROM outbox WHERE lease_until_s > ?", (now,))),
            "oldestEventAgeS": None if oldest is None else max(0.0, now - float(oldest)),
            "oldestReadAgeS": None if oldest_read is None
            else max(0.0, now - int(oldest_read) / 1e6),
            "sizeOnDiskBytes": size_on_disk(path),
            "dropped": sum(int(counters.get(n, 0)) for n in DROP_COUNTERS),
            "droppedByCause": {n: int(counters[n]) for n in DROP_COUNTERS if n in counters},
            "quarantined": int(counters.get("quarantined_files", 0)),
            "quarantinedFilesPresent": sorted(
                p for p in glob.glob(f"{glob.escape(str(path))}.*")
                if not p.endswith(("-wal", "-shm", ".sock"))),
            "deadLetters": int(one("SELECT count(*) FROM dead_letters")),
        }
    finally:
        conn.close()


def _payload(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def iter_export(path: Path, *, dead_letters: bool = False) -> Iterator[dict[str, Any]]:
    conn = _connect_ro(path)
    try:
        if dead_letters:
            sql = ("SELECT id, kind, priority, created_at_s, attempts, last_error, reason, "
                   "dead_at_s, payload FROM dead_letters ORDER BY id")
            for row in conn.execute(sql):
                yield {"id": row[0], "kind": row[1], "priority": row[2], "createdAtS": row[3],
                       "attempts": row[4], "lastError": row[5], "reason": row[6],
                       "deadAtS": row[7], "payload": _payload(row[8])}
        else:
            sql = ("SELECT id, kind, priority, created_at_s, attempts, last_error, payload "
                   "FROM outbox ORDER BY priority DESC, id")
            for row in conn.execute(sql):
                yield {"id": row[0], "kind": row[1], "priority": row[2], "createdAtS": row[3],
                       "attempts": row[4], "lastError": row[5], "payload": _payload(row[6])}
    finally:
        conn.close()


def export(path: Path, out: TextIO, *, dead_letters: bool = False) -> int:
    n = 0
    for item in iter_export(path, dead_letters=dead_letters):
        out.write(json.dumps(item, separators=(",", ":")) + "\n")
        n += 1
    return n


def purge(path: Path, *, dead_letters_only: bool = False) -> dict[str, int]:
    """Delete pending reads and events and the dead letters (or only the dead letters)."""
    if not path.exists():
        raise BufferFileError(f"no buffer file at {path}")
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("BEGIN IMMEDIATE")
        try:
            counts = {"deadLetters": conn.execute("DELETE FROM dead_letters").rowcount}
            if not dead_letters_only:
                counts["reads"] = conn.execute("DELETE FROM reads").rowcount
                counts["events"] = conn.execute("DELETE FROM outbox").rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.executescript("PRAGMA incremental_vacuum;")  # give the pages back to the disk
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.DatabaseError as exc:
        raise BufferFileError(f"cannot purge {path}: {exc}") from exc
    finally:
        conn.close()
    return counts
