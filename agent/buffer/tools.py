"""Technician commands over a buffer file: stats, export, purge (the CLI calls these).

Pure functions over a path with the stdlib sqlite3. ``stats`` and ``export`` open the file
read-only (``mode=ro``): in WAL mode a reader never blocks the running agent, and the agent
never blocks it (a long export only delays the agent's checkpoints, so the -wal file may grow
while it runs). ``purge`` writes: it waits for the agent's transaction to finish (busy timeout)
and is one short transaction of its own; stopping the agent first is still the safer way.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from agent.buffer.schema import SCHEMA_VERSION

BUSY_TIMEOUT_S = 10.0
_DROP_COUNTERS = ("dropped_events", "dropped_reads", "dropped_dead_letters", "expired_events",
                  "expired_reads", "undecodable_reads")


class ToolError(Exception):
    """A technician command could not run; the message says why and what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FileStats:
    path: str
    size_bytes: int  # the file plus its -wal
    generation: str | None
    schema_version: int
    reads_pending: int
    events_pending: int
    events_leased: int
    oldest_event_age_s: float | None
    dead_letters: int
    dropped_total: int
    counters: dict[str, int] = field(default_factory=dict)
    quarantined_files: list[str] = field(default_factory=list)  # *.corrupt-* beside the file

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeResult:
    done: bool  # False: a dry run (confirm was not given), nothing was deleted
    reads: int
    events: int
    dead_letters: int


def _require(path: Path) -> None:
    if not path.exists():
        raise ToolError(f"{path}: no such buffer file (check buffer.path in the config)")
    if not os.access(path, os.R_OK):
        raise ToolError(f"{path}: not readable by this user (try with sudo)")


@contextmanager
def _connect(path: Path, *, write: bool) -> Iterator[sqlite3.Connection]:
    _require(path)
    mode = "rw" if write else "ro"
    try:
        conn = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, isolation_level=None,
                               timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise ToolError(f"{path}: cannot open it: {exc}") from exc
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:
            raise ToolError(f"{path}: not a buffer file (no schema)")
        if version > SCHEMA_VERSION:
            raise ToolError(f"{path}: schema version {version} is newer than this tool knows "
                            f"({SCHEMA_VERSION}); use the agent version that wrote it")
        yield conn
    except sqlite3.DatabaseError as exc:
        raise ToolError(f"{path}: {exc} (if the file is corrupt, the agent quarantines and "
                        f"salvages it at its next start)") from exc
    finally:
        conn.close()


def _one(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def stats(path: str | os.PathLike[str], *, now: float | None = None) -> FileStats:
    """Depth, oldest age, size on disk, dropped / quarantined counts, dead letters."""
    p = Path(path)
    now = time.time() if now is None else now
    with _connect(p, write=False) as conn:
        conn.execute("BEGIN")  # one consistent snapshot
        counters = {str(n): int(v) for n, v in conn.execute("SELECT name, value FROM counters")}
        oldest = _one(conn, "SELECT created_at_s FROM outbox ORDER BY id LIMIT 1")
        result = FileStats(
            path=str(p),
            size_bytes=sum(f.stat().st_size for f in (p, Path(f"{p}-wal")) if f.exists()),
            generation=_one(conn, "SELECT value FROM meta WHERE key = 'generation'"),
            schema_version=int(_one(conn, "PRAGMA user_version")),
            reads_pending=int(_one(conn, "SELECT count(*) FROM reads")),
            events_pending=int(_one(conn, "SELECT count(*) FROM outbox")),
            events_leased=int(_one(conn, "SELECT count(*) FROM outbox WHERE lease_until_s > ?",
                                   (now,))),
            oldest_event_age_s=None if oldest is None else max(0.0, now - float(oldest)),
            dead_letters=int(_one(conn, "SELECT count(*) FROM dead_letters")),
            dropped_total=sum(counters.get(n, 0) for n in _DROP_COUNTERS),
            counters=counters,
            quarantined_files=sorted(
                str(q) for q in p.parent.glob(f"{p.name}.corrupt-*")
                if not q.name.endswith(("-wal", "-shm", "-journal", ".report.json"))),
        )
        conn.execute("COMMIT")
    return result


_OUTBOX_COLS = ("id", "kind", "priority", "created_at_s", "attempts", "lease_until_s",
                "last_error", "payload")
_DEAD_COLS = ("id", "kind", "priority", "created_at_s", "attempts", "last_error", "reason",
              "dead_at_s", "payload")


def export(path: str | os.PathLike[str], out: TextIO, *, dead_letters: bool = False,
           outbox: bool = True) -> int:
    """Write one JSON object per line: outbox rows (and dead letters); return the count.

    Each line has ``"table"`` plus the row's columns; ``payload`` is the exact stored text.
    Rows stream one by one from one read snapshot, so memory stays flat on a big file.
    """
    p = Path(path)
    n = 0
    plan = ([("outbox", _OUTBOX_COLS)] if outbox else []) + (
        [("dead_letters", _DEAD_COLS)] if dead_letters else [])
    with _connect(p, write=False) as conn:
        conn.execute("BEGIN")
        for table, cols in plan:
            cur = conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY id")  # noqa: S608
            for row in cur:
                record: dict[str, Any] = {"table": table}
                record.update(zip(cols, row, strict=True))
                out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
                n += 1
        conn.execute("COMMIT")
    return n


def export_documents(path: str | os.PathLike[str], out: TextIO, *, topic: str) -> int:
    """Frozen documents (seq order) as capture lines: ``topic``, the exact bytes in
    ``payload_b64`` and the signature as the ``tea-jws`` property (docs/provenance.md)."""
    n = 0
    with _connect(Path(path), write=False) as conn:
        conn.execute("BEGIN")
        for chain_id, seq, payload, sha, jws in conn.execute(
                "SELECT chain_id, seq, payload, sha256, jws FROM documents ORDER BY id"):
            record = {"topic": topic, "payload_b64": base64.b64encode(payload).decode(),
                      "properties": [] if jws is None else [["tea-jws", jws]],
                      "chainId": chain_id, "seq": seq, "sha256": f"sha-256:{sha}"}
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
            n += 1
        conn.execute("COMMIT")
    return n


def purge(path: str | os.PathLike[str], *, confirm: bool, outbox: bool = True,
          reads: bool = False, dead_letters: bool = False) -> PurgeResult:
    """Delete queued rows for good. Without ``confirm`` only count them (a dry run).

    The CLI shows the dry run's counts, asks the technician, then calls again with
    ``confirm=True``. Purged rows are counted in the file (counters ``purged_*``), not as drops.
    """
    p = Path(path)
    tables = [t for t, on in (("reads", reads), ("outbox", outbox),
                              ("dead_letters", dead_letters)) if on]
    with _connect(p, write=confirm) as conn:
        conn.execute("BEGIN IMMEDIATE" if confirm else "BEGIN")
        counts = {t: int(_one(conn, f"SELECT count(*) FROM {t}")) for t in tables}  # noqa: S608
        if confirm:
            for t in tables:
                conn.execute(f"DELETE FROM {t}")  # noqa: S608
                conn.execute(
                    "INSERT INTO counters (name, value) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                    (f"purged_{t}", counts[t]))
        conn.execute("COMMIT")
        if confirm:
            conn.executescript("PRAGMA incremental_vacuum;")  # give the space back
    return PurgeResult(done=confirm, reads=counts.get("reads", 0),
                       events=counts.get("outbox", 0), dead_letters=counts.get("dead_letters", 0))


# ----------------------------------------------------------------------------- dead letters


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    id: int
    kind: str
    reason: str
    attempts: int
    last_error: str | None
    created_at_s: float
    dead_at_s: float
    size_bytes: int
    event_ids: list[str]  # the EPCIS eventIDs inside (for an events document)
    payload: str | None = None  # only from dead_letter(); the exact stored text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _event_ids(payload: str) -> list[str]:
    try:
        doc = json.loads(payload)
        events = doc["epcisBody"]["eventList"] if "epcisBody" in doc else [doc]
        return [str(e["eventID"]) for e in events if isinstance(e, dict) and "eventID" in e]
    except (ValueError, TypeError, KeyError):
        return []


def _dead(row: tuple[Any, ...], *, with_payload: bool) -> DeadLetter:
    id_, kind, reason, attempts, last_error, created, dead_at, payload = row
    return DeadLetter(id=int(id_), kind=str(kind), reason=str(reason), attempts=int(attempts),
                      last_error=last_error, created_at_s=float(created),
                      dead_at_s=float(dead_at), size_bytes=len(str(payload).encode()),
                      event_ids=_event_ids(str(payload)),
                      payload=str(payload) if with_payload else None)


_DEAD_SELECT = ("SELECT id, kind, reason, attempts, last_error, created_at_s, dead_at_s, payload "
                "FROM dead_letters")


def dead_letters(path: str | os.PathLike[str], *, limit: int = 100) -> list[DeadLetter]:
    """The oldest ``limit`` dead letters (read-only; payloads left out)."""
    with _connect(Path(path), write=False) as conn:
        rows = conn.execute(f"{_DEAD_SELECT} ORDER BY id LIMIT ?", (limit,)).fetchall()
    return [_dead(r, with_payload=False) for r in rows]


def dead_letter(path: str | os.PathLike[str], dead_id: int) -> DeadLetter:
    """One dead letter with its payload; ToolError when there is none with that id."""
    with _connect(Path(path), write=False) as conn:
        row = conn.execute(f"{_DEAD_SELECT} WHERE id = ?", (dead_id,)).fetchone()
    if row is None:
        raise ToolError(f"{path}: no dead letter with id {dead_id} (see `edge-agent buffer "
                        "dead-letters list`)")
    return _dead(row, with_payload=True)


def replay(path: str | os.PathLike[str], ids: list[int] | None) -> int:
    """Put dead letters (``ids``, or all with None) back in the outbox, unchanged: the same
    row id and payload, so the same eventIDs reach the broker (a receiver that already has
    one deduplicates it). Attempts start again at 0. Returns how many moved; safe while the
    agent runs (one short write transaction; its forwarder picks the rows up)."""
    p = Path(path)
    with _connect(p, write=True) as conn:
        conn.execute("BEGIN IMMEDIATE")
        if ids is None:
            chosen = [int(r[0]) for r in conn.execute("SELECT id FROM dead_letters")]
        else:
            present = {int(r[0]) for r in conn.execute(
                f"SELECT id FROM dead_letters WHERE id IN ({','.join('?' * len(ids))})",  # noqa: S608
                ids)} if ids else set()
            missing = sorted(set(ids) - present)
            if missing:
                conn.execute("ROLLBACK")
                raise ToolError(f"{p}: no dead letter with id {', '.join(map(str, missing))}; "
                                "nothing replayed")
            chosen = sorted(present)
        conn.executemany(
            "INSERT INTO outbox (id, kind, payload, priority, created_at_s, attempts, "
            "lease_until_s, last_error) SELECT id, kind, payload, priority, created_at_s, 0, "
            "NULL, 'replayed dead letter: ' || reason FROM dead_letters WHERE id = ?",
            [(i,) for i in chosen])
        conn.executemany("DELETE FROM dead_letters WHERE id = ?", [(i,) for i in chosen])
        conn.execute("INSERT INTO counters (name, value) VALUES ('replayed_dead_letters', ?) "
                     "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                     (len(chosen),))
        conn.execute("COMMIT")
    return len(chosen)
