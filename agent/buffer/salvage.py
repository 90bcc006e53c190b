"""Salvage: read back what is still readable from a quarantined (corrupt) buffer file.

Two passes, both into the fresh buffer, keyed by id (a row found twice is inserted once):

1. Through SQLite, by rowid range. A range whose pages cannot be read is split in halves until
   the unreadable part is isolated (down to single ids, within a budget of failed queries), and
   that part is skipped. On a 3,000-row file with garbage written into its middle this
   recovered 2,964 rows where the sqlite3 CLI's ``.recover`` gave up.
2. Page by page (agent/buffer/pages.py): every table-leaf page of the file and of its WAL,
   without the B-tree above them, so rows survive a truncated file, lost interior pages, an
   unreadable ``sqlite_sequence`` or a damaged WAL frame. A row is assigned to its table by
   its shape. Ids stay above every id seen in either pass.

Every row is validated before it is inserted: columns of the right types, and an outbox or
dead-letter payload must be a JSON object of the expected shape (an event: an EPCIS event
with its eventID), so a damaged payload is never published. Invalid rows are counted and
listed in the report. Leases are dropped (the rows become available).
"""

from __future__ import annotations

import json
import logging
import mmap
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.buffer.pages import PageImages, RawRow
from agent.buffer.rows import decode_read
from agent.buffer.schema import TABLE_COLUMNS, Conn
from agent.model import TagRead

log = logging.getLogger(__name__)

_WINDOW = 4096  # ids bisected when a forward read fails
_FAILED_QUERY_BUDGET = 20_000
_QUERY_BUDGET = 2_000_000
_TRUSTED_GAP = 32  # a range query's gap narrower than this is believed
_EMPTY_WINDOWS = 16  # without a known highest id: stop after this many empty windows
_COMMIT_EVERY = 10_000


@dataclass(slots=True)
class SalvageReport:
    source: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows recovered
    skipped: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # unreadable ranges
    invalid_rows: int = 0  # read, but with values that cannot be right
    invalid: list[dict[str, Any]] = field(default_factory=list)  # the first few, with reasons
    page_rows: dict[str, int] = field(default_factory=dict)  # of rows: found only page by page
    invalid_ids: set[tuple[str, int]] = field(default_factory=set)  # counted once per row
    previous_generation: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    error: str | None = None  # why (part of) the file could not be read at all

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _open_source(source: Path) -> sqlite3.Connection:
    # Read-only: the quarantined file must stay exactly as it was found (no checkpoint on close).
    last: sqlite3.Error | None = None
    for query in ("mode=ro", "immutable=1"):
        try:
            conn = sqlite3.connect(f"file:{source}?{query}", uri=True, isolation_level=None)
            conn.execute("PRAGMA cell_size_check = ON")
        except sqlite3.Error as exc:
            last = exc
        else:
            return conn
    assert last is not None
    raise last


def _scalar(src: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    try:
        row = src.execute(sql, params).fetchone()
    except sqlite3.DatabaseError:
        return None
    return None if row is None else row[0]


class _Reader:
    def __init__(self, src: sqlite3.Connection, report: SalvageReport) -> None:
        self.src = src
        self.report = report
        self.failed = 0
        self.queries = 0

    def table(self, table: str, cols: str, hi: int | None,
              sink: Callable[[list[tuple[Any, ...]]], None]) -> None:
        """Read a table back window by window of ids (see _probe).

        ``hi`` is the highest id the table ever had (from sqlite_sequence) when known; without
        it, probing goes on until _EMPTY_WINDOWS windows in a row found nothing.
        """
        lo = _scalar(self.src, f"SELECT min(rowid) FROM {table}")  # noqa: S608
        top = _scalar(self.src, f"SELECT max(rowid) FROM {table}")  # noqa: S608
        if isinstance(top, int):
            hi = top if hi is None else max(top, hi)
        pos = lo if isinstance(lo, int) else 1
        last_found = pos - 1

        def limit() -> int:
            return hi if hi is not None else last_found + _EMPTY_WINDOWS * _WINDOW

        while pos <= limit():
            if self.failed >= _FAILED_QUERY_BUDGET or self.queries >= _QUERY_BUDGET:
                self._skip(table, pos, limit())
                return
            end = min(pos + _WINDOW - 1, limit())
            last_found = max(last_found, self._probe(table, cols, pos, end, sink))
            pos = end + 1

    def _sane(self, rows: list[tuple[Any, ...]], lo: int, hi: int) -> list[tuple[Any, ...]]:
        """The leading rows whose ids increase within [lo, hi]; a damaged page yields others."""
        prev = lo - 1
        for i, row in enumerate(rows):
            rowid = row[0]
            if not isinstance(rowid, int) or rowid <= prev or rowid > hi:
                self.report.invalid_rows += 1
                return rows[:i]
            prev = rowid
        return rows

    def _probe(self, table: str, cols: str, lo: int, hi: int,
               sink: Callable[[list[tuple[Any, ...]]], None]) -> int:
        """Read ids lo..hi; return the highest id found (or -1).

        A range query that fails is split in halves down to single ids, which are skipped.
        A damaged interior page can also make a range query return *nothing* (or stop early)
        without any error, so gaps wider than _TRUSTED_GAP ids are probed again, split in
        halves, until they are that narrow.
        """
        sql = f"SELECT rowid, {cols} FROM {table} WHERE rowid BETWEEN ? AND ? ORDER BY rowid"  # noqa: S608
        stack = [(lo, hi)]
        found = -1
        while stack:
            a, b = stack.pop()
            self.queries += 1
            try:
                rows = self._sane(self.src.execute(sql, (a, b)).fetchall(), a, b)
            except sqlite3.DatabaseError:
                self.failed += 1
                if a == b or self.failed >= _FAILED_QUERY_BUDGET:
                    self._skip(table, a, b)
                    continue
                mid = (a + b) // 2
                stack += [(mid + 1, b), (a, mid)]
                continue
            if rows:
                sink(rows)
                found = max(found, int(rows[-1][0]))
            if b - a < _TRUSTED_GAP or self.queries >= _QUERY_BUDGET:
                continue
            if not rows:
                mid = (a + b) // 2
                stack += [(mid + 1, b), (a, mid)]
                continue
            prev = a - 1
            for rowid in [int(r[0]) for r in rows] + [b + 1]:
                if rowid - prev - 1 > _TRUSTED_GAP:
                    stack.append((prev + 1, rowid - 1))
                prev = rowid
        return found

    def _skip(self, table: str, a: int, b: int) -> None:
        ranges = self.report.skipped.setdefault(table, [])
        if ranges and ranges[-1][1] + 1 == a:
            ranges[-1] = (ranges[-1][0], b)
        else:
            ranges.append((a, b))


_EVENT_TYPES = frozenset({"ObjectEvent", "AggregationEvent", "TransactionEvent",
                          "TransformationEvent", "AssociationEvent"})
_INVALID_KEPT = 100  # invalid rows described in the report (all are counted)


def payload_problem(kind: Any, payload: Any) -> str | None:
    """Why an outbox payload cannot be published as it is; None when it can."""
    if not isinstance(payload, str):
        return "payload is not text"
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        return f"payload is not JSON ({exc})"
    if not isinstance(doc, dict):
        return "payload is not a JSON object"
    if kind == "event":
        if doc.get("type") not in _EVENT_TYPES:
            return f"event payload has type {str(doc.get('type'))[:40]!r}, not an EPCIS event"
        if not isinstance(doc.get("eventID"), str) or not isinstance(doc.get("eventTime"), str):
            return "event payload lacks its eventID or eventTime"
    return None


def _outbox_problem(row: tuple[Any, ...]) -> str | None:
    _id, kind, payload, priority, created, attempts = row[:6]
    if not (isinstance(kind, str) and isinstance(priority, int)
            and isinstance(created, int | float) and isinstance(attempts, int)):
        return "columns of the wrong type"
    return payload_problem(kind, payload)


def _dead_problem(row: tuple[Any, ...]) -> str | None:
    problem = _outbox_problem(row)
    if problem is None and not (isinstance(row[7], str) and isinstance(row[8], int | float)):
        return "columns of the wrong type"
    return problem


def _read_problem(row: tuple[Any, ...]) -> str | None:
    """A read row must decode, and its numbers must be ones a reader can have sent: garbage
    over a record's payload leaves a row SQLite still returns (found with schema v2's
    layout: a tag read with RSSI -3.8e-163 dBm on 1.8 GHz)."""
    try:
        read = decode_read(tuple(row[1:]))
    except (TypeError, ValueError, OverflowError) as exc:
        return f"read row does not decode ({exc})"
    if isinstance(read, TagRead):
        checks = (
            (read.rssi_dbm, -150.0, 30.0, "rssi_dbm"),
            (read.antenna, 0, 0xFFFF, "antenna"),
            (read.pc, 0, 0xFFFF, "pc"),
            (read.phase, 0, 0xFFFF, "phase"),
            (read.frequency_khz, 400_000, 3_000_000, "frequency_khz"),  # UHF RFID: 860-960 MHz
        )
        for value, lo, hi, name in checks:
            if value is not None and not lo <= value <= hi:
                return f"read row has an impossible {name} ({value})"
    return None


def _kv_problem(row: tuple[Any, ...]) -> str | None:
    return None if isinstance(row[0], str) and row[1] is not None else "key or value missing"


def _note_invalid(report: SalvageReport, table: str, row: tuple[Any, ...], why: str) -> None:
    if isinstance(row[0], int):
        if (table, row[0]) in report.invalid_ids:
            return  # the same row again (both passes, or two page images)
        report.invalid_ids.add((table, row[0]))
    report.invalid_rows += 1
    if len(report.invalid) < _INVALID_KEPT:
        report.invalid.append({"table": table, "id": row[0] if isinstance(row[0], int) else None,
                               "reason": why[:200]})


def salvage(source: Path, dst: Conn) -> SalvageReport:
    """Copy the readable rows of ``source`` into ``dst`` (a fresh, migrated buffer)."""
    report = SalvageReport(source=str(source))
    try:
        src = _open_source(source)
    except sqlite3.Error as exc:
        report.error = f"cannot open it at all: {exc}"
        return report
    try:
        _salvage(src, dst, report, source)
    finally:
        src.close()
    if report.error is None and not report.total and report.skipped:
        report.error = "no row was readable"
    return report


def _salvage(src: sqlite3.Connection, dst: Conn, report: SalvageReport, source: Path) -> None:
    reader = _Reader(src, report)
    sequences: dict[str, int] = {}
    try:
        sequences = {
            name: seq for name, seq in src.execute("SELECT name, seq FROM sqlite_sequence")
            if isinstance(name, str) and isinstance(seq, int)
        }
    except sqlite3.DatabaseError as exc:
        report.error = f"sqlite_sequence unreadable: {exc}"
    generation = _scalar(src, "SELECT value FROM meta WHERE key = 'generation'")
    report.previous_generation = generation if isinstance(generation, str) else None
    # Frozen documents are not copied: their rows are, and are frozen again in the new file's
    # chain, whose first document names the corrupt file's chain head (docs/provenance.md).
    old_head = _scalar(src, "SELECT value FROM meta WHERE key = 'chain'")
    if isinstance(old_head, str):
        dst.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('previous_chain', ?)",
                    (old_head,))

    def counters_sink(rows: list[tuple[Any, ...]]) -> None:
        for _rowid, name, value in rows:
            if isinstance(name, str) and isinstance(value, int):
                report.counters[name] = value

    reader.table("counters", "name, value", None, counters_sink)

    pending = 0

    def inserter(table: str, validate: Callable[[tuple[Any, ...]], str | None],
                 upsert: bool) -> Callable[[list[tuple[Any, ...]]], None]:
        cols = TABLE_COLUMNS[table]
        verb = "INSERT OR REPLACE" if upsert else "INSERT OR IGNORE"
        sql = (f"{verb} INTO {table} ({', '.join(cols)}) "
               f"VALUES ({', '.join('?' * len(cols))})")

        def sink(rows: list[tuple[Any, ...]]) -> None:
            nonlocal pending
            good = []
            for row in rows:
                values = tuple(row[1:])  # row[0] is the rowid
                problem = validate(values)
                if problem is not None:
                    _note_invalid(report, table, values, problem)
                    continue
                if table == "outbox":  # leases of a dead file mean nothing: release them
                    values = (*values[:6], None, values[7])
                good.append(values)
            if not dst.in_transaction:
                dst.execute("BEGIN IMMEDIATE")
            dst.executemany(sql, good)
            report.rows[table] = report.rows.get(table, 0) + len(good)
            pending += len(good)
            if pending >= _COMMIT_EVERY:
                dst.execute("COMMIT")
                pending = 0

        return sink

    plan: list[tuple[str, Callable[[tuple[Any, ...]], str | None], int | None, bool]] = [
        ("reads", _read_problem, sequences.get("reads"), False),
        ("outbox", _outbox_problem, sequences.get("outbox"), False),
        ("dead_letters", _dead_problem, sequences.get("outbox"), False),
        ("state", _kv_problem, None, True),
    ]
    try:
        for table, validate, hi, upsert in plan:
            cols = ", ".join(_source_columns(reader.src, table))
            reader.table(table, cols, hi, inserter(table, validate, upsert))
        if not dst.in_transaction:
            dst.execute("BEGIN IMMEDIATE")
        by_table = {t: (v, u) for t, v, _hi, u in plan}
        seen_max = _page_pass(source, dst, report, by_table)
        for name in ("reads", "outbox"):
            top = max(sequences.get(name, 0), seen_max.get(name, 0))
            if name == "outbox":  # dead letters keep their outbox ids
                top = max(top, seen_max.get("dead_letters", 0))
            if top:
                raise_sequence(dst, name, top)
        dst.execute("COMMIT")
    except BaseException:
        if dst.in_transaction:
            dst.execute("ROLLBACK")
        raise


def _source_columns(src: sqlite3.Connection, table: str) -> list[str]:
    """The columns to read from the damaged file: the current schema's, with NULL for those
    its (older) schema does not have yet (reads.extra came with schema v2)."""
    try:
        have = {str(r[1]) for r in src.execute(f"PRAGMA table_info({table})")}
    except sqlite3.DatabaseError:
        have = set()
    cols = list(TABLE_COLUMNS[table])
    if not have:  # unreadable schema: ask for everything, the probes report what fails
        return cols
    return [c if c in have else "NULL" for c in cols]


def _file_schema_version(db: bytes | mmap.mmap) -> int | None:
    """The file header's user_version (offset 60, big-endian; SQLite file format §1.3)."""
    if len(db) < 100 or db[:16] != b"SQLite format 3\x00":
        return None
    return int.from_bytes(db[60:64], "big")


def _table_of(row: RawRow, read_values: frozenset[int] = frozenset({13, 14})) -> str | None:
    """Which buffer table a page-level row belongs to, by its shape (schema.py, _V1).

    ``INTEGER PRIMARY KEY`` columns are stored as NULL (the rowid is the id). The key-value
    tables cannot be told apart by shape except ``meta``'s generation, so only that is used.
    """
    v = row.values
    n = len(v)
    if not n or (v[0] is not None and n != 2):
        return None
    if n in read_values and isinstance(v[1], int) and isinstance(v[2], str):
        return "reads"  # 13 values: written before schema v2 (no extra)
    if n == 8 and isinstance(v[1], str) and isinstance(v[2], str):
        return "outbox"
    if n == 9 and isinstance(v[1], str) and isinstance(v[2], str) and isinstance(v[7], str):
        return "dead_letters"
    if n == 2 and v[0] == "generation" and isinstance(v[1], str):
        return "meta"
    return None


def _page_pass(
    source: Path, dst: Conn, report: SalvageReport,
    tables: dict[str, tuple[Callable[[tuple[Any, ...]], str | None], bool]],
) -> dict[str, int]:
    """Pass 2: rows straight from the page images; returns the highest id seen per table."""
    seen: dict[str, int] = {}
    try:
        with source.open("rb") as f_db:
            size = source.stat().st_size
            db: bytes | mmap.mmap = (
                mmap.mmap(f_db.fileno(), 0, access=mmap.ACCESS_READ) if size else b"")
            wal_path = Path(f"{source}-wal")
            wal: bytes | mmap.mmap = b""
            f_wal = wal_path.open("rb") if wal_path.exists() else None
            try:
                if f_wal is not None and wal_path.stat().st_size:
                    wal = mmap.mmap(f_wal.fileno(), 0, access=mmap.ACCESS_READ)
                # A v2 file's reads rows have 14 values: one of 13 there is a damaged record.
                version = _file_schema_version(db)
                shapes = frozenset({14}) if version is not None and version >= 2 else (
                    frozenset({13}) if version == 1 else frozenset({13, 14}))
                _page_rows(PageImages(db, wal), dst, report, tables, seen, shapes)
            finally:
                if isinstance(wal, mmap.mmap):
                    wal.close()
                if f_wal is not None:
                    f_wal.close()
                if isinstance(db, mmap.mmap):
                    db.close()
    except OSError as exc:
        report.error = (report.error + "; " if report.error else "") + (
            f"page-by-page pass failed: {exc}")
    return seen


def _page_rows(
    images: PageImages, dst: Conn, report: SalvageReport,
    tables: dict[str, tuple[Callable[[tuple[Any, ...]], str | None], bool]],
    seen: dict[str, int],
    read_values: frozenset[int] = frozenset({13, 14}),
) -> None:
    for raw in images.rows():
        table = _table_of(raw, read_values)
        if table is None:
            continue
        if table == "meta":
            if report.previous_generation is None:
                report.previous_generation = str(raw.values[1])
            continue
        values = (raw.rowid, *raw.values[1:])
        if len(values) < len(TABLE_COLUMNS[table]):  # a reads row from before schema v2
            values = (*values, *(None,) * (len(TABLE_COLUMNS[table]) - len(values)))
        seen[table] = max(seen.get(table, 0), raw.rowid)
        validate, _upsert = tables[table]
        exists = dst.execute(f"SELECT 1 FROM {table} WHERE id = ?",  # noqa: S608
                             (raw.rowid,)).fetchone()
        if exists is not None:
            continue  # pass 1 had it (or an earlier image did)
        problem = validate(values)
        if problem is not None:
            _note_invalid(report, table, values, f"{problem} (page {raw.page})")
            continue
        if table == "outbox":
            values = (*values[:6], None, values[7])
        cols = TABLE_COLUMNS[table]
        dst.execute(f"INSERT INTO {table} ({', '.join(cols)}) "  # noqa: S608
                    f"VALUES ({', '.join('?' * len(cols))})", values)
        report.rows[table] = report.rows.get(table, 0) + 1
        report.page_rows[table] = report.page_rows.get(table, 0) + 1


def raise_sequence(dst: Conn, name: str, seq: int) -> None:
    """Keep AUTOINCREMENT past every id the old file ever handed out."""
    row = dst.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (name,)).fetchone()
    if row is None:
        dst.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, seq))
    elif int(row[0]) < seq:
        dst.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (seq, name))
