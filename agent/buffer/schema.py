"""Schema of the buffer file, its migrations and the connection settings.

The schema version is ``PRAGMA user_version``: the number of migration steps applied. A new
step is appended to :data:`MIGRATIONS` (never edit a released one); :func:`migrate` applies the
missing steps, each in its own transaction together with the new user_version.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

# ------------------------------------------------------------------------- connection protocol


class Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Conn(Protocol):
    """What the buffer needs of a DB-API connection in autocommit mode.

    ``sqlite3.Connection(isolation_level=None)`` satisfies it; the power-cut test adapts an
    apsw connection (running over a VFS that loses unsynced writes) to it.
    """

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...

    def executescript(self, sql_script: str, /) -> Cursor: ...

    def close(self) -> None: ...

    @property
    def in_transaction(self) -> bool: ...


# ------------------------------------------------------------------------- migrations

_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
CREATE TABLE counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
-- Stage 1: reads as the readers reported them (see rows.py for the encoding).
CREATE TABLE reads (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          INTEGER NOT NULL,
    reader        TEXT NOT NULL,
    read_at_us    INTEGER NOT NULL,
    clock_synced  INTEGER NOT NULL,
    epc           BLOB,
    antenna       INTEGER,
    rssi_dbm      REAL,
    pc            INTEGER,
    phase         INTEGER,
    frequency_khz INTEGER,
    data          BLOB,
    symbology     TEXT
);
-- Stage 2: messages for the uplink. lease_until_s NULL = available.
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    priority      INTEGER NOT NULL,
    created_at_s  REAL NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    lease_until_s REAL,
    last_error    TEXT
);
CREATE INDEX outbox_order ON outbox (priority DESC, id);
CREATE INDEX outbox_leased ON outbox (lease_until_s) WHERE lease_until_s IS NOT NULL;
-- Rows the uplink gave up on: kept for a technician, never retried automatically.
CREATE TABLE dead_letters (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    priority     INTEGER NOT NULL,
    created_at_s REAL NOT NULL,
    attempts     INTEGER NOT NULL,
    last_error   TEXT,
    reason       TEXT NOT NULL,
    dead_at_s    REAL NOT NULL
);
-- The pipeline's persistent key-value state (a rowid table so that salvage can read it back).
CREATE TABLE state (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
"""

# Driver-specific read fields (JSON object of tea: keys, e.g. an LLRP reader's clock offset,
# Impinj RF phase and Doppler); NULL for most reads. Rows written before keep 12 values.
_V2 = """
ALTER TABLE reads ADD COLUMN extra TEXT;
"""

# Frozen documents (docs/provenance.md): each EPCISDocument is built once, before its first
# publish, and kept here byte for byte with its place in the gateway's hash chain, so every
# retry resends identical bytes. ``document_rows`` ties outbox rows to the document that carries
# them: such rows are claimed with their document only and never evicted or expired (a frozen
# document is small in number: at most the uplink's in-flight window plus retries). The chain
# head and the gaps still to report live in ``meta`` (keys ``chain`` and ``chain_gaps``).
_V3 = """
CREATE TABLE documents (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    chain_id     TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    payload      BLOB NOT NULL,
    sha256       TEXT NOT NULL,
    jws          TEXT,
    events       INTEGER NOT NULL,
    created_at_s REAL NOT NULL,
    UNIQUE (chain_id, seq)
);
CREATE TABLE document_rows (
    row_id   INTEGER PRIMARY KEY NOT NULL,
    document INTEGER NOT NULL
);
CREATE INDEX document_rows_document ON document_rows (document);
"""

# Rows not on lease, in claim order (issue 12): the claim's scan of ``outbox_order`` walked
# past every row in flight (up to the window's 20 x 500 leased rows, the oldest, so first)
# before it found one to claim, on every claim. Leases run out through ``outbox_leased``.
_V4 = """
CREATE INDEX outbox_fresh ON outbox (priority DESC, id) WHERE lease_until_s IS NULL;
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3, _V4]
"""Step i (0-based) takes the schema from user_version i to i + 1."""

SCHEMA_VERSION = len(MIGRATIONS)

# Columns per table as the current schema has them (salvage and tools read these).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "reads": (
        "id", "kind", "reader", "read_at_us", "clock_synced", "epc", "antenna", "rssi_dbm", "pc",
        "phase", "frequency_khz", "data", "symbology", "extra",
    ),
    "outbox": (
        "id", "kind", "payload", "priority", "created_at_s", "attempts", "lease_until_s",
        "last_error",
    ),
    "dead_letters": (
        "id", "kind", "payload", "priority", "created_at_s", "attempts", "last_error", "reason",
        "dead_at_s",
    ),
    "state": ("key", "value"),
    "counters": ("name", "value"),
    "meta": ("key", "value"),
}


class SchemaTooNewError(Exception):
    def __init__(self, found: int) -> None:
        super().__init__(
            f"the file has schema version {found}, newer than this agent knows "
            f"({SCHEMA_VERSION}); it was written by a newer agent"
        )
        self.found = found


def user_version(conn: Conn) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: Conn) -> int:
    """Apply the missing migration steps; return the number applied."""
    current = user_version(conn)
    if current > SCHEMA_VERSION:
        raise SchemaTooNewError(current)
    for version in range(current, SCHEMA_VERSION):
        # executescript commits anything pending first; the step and its version are one
        # transaction, so a crash leaves either the old or the new version, never a half.
        script = f"BEGIN IMMEDIATE;\n{MIGRATIONS[version]}\nPRAGMA user_version = {version + 1};\n"
        try:
            conn.executescript(script + "COMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION - current


# ------------------------------------------------------------------------- connection settings

JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024  # the WAL is truncated to this after a checkpoint
BUSY_TIMEOUT_MS = 5000  # tools (stats/export/purge) may hold a lock briefly


def wal_autocheckpoint_pages(reserve_bytes: int, page_size: int = 4096) -> int:
    """Checkpoint often enough that the WAL never outgrows half the space reserve.

    When the disk fills, the released reserve must hold what draining needs: the WAL frames of
    the deletes and a checkpoint that resets the WAL. SQLite's default (1000 pages) is kept
    when the reserve allows it or when there is no reserve.
    """
    if reserve_bytes <= 0:
        return 1000
    return max(16, min(1000, reserve_bytes // page_size // 2))


def configure(conn: Conn, synchronous: str, *, reserve_bytes: int = 0) -> None:
    """Settings for the writer connection. auto_vacuum only takes on a new (empty) file."""
    if synchronous not in ("FULL", "EXTRA", "NORMAL"):
        raise ValueError(f"unsupported synchronous setting {synchronous!r}")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise OSError(f"the filesystem does not support SQLite's WAL mode (journal_mode={mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = wal_autocheckpoint_pages(reserve_bytes, page_size)
    conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
    conn.execute("PRAGMA temp_store = MEMORY")
    # Debian and Raspberry Pi OS build SQLite with SECURE_DELETE on: every deleted row and
    # every freed page (a delivered document's 128 KiB of overflow pages) is overwritten with
    # zeros and the zeros go through the WAL to the disk again. FAST zeroes what shares a
    # page already being written and no more (issue 12: a quarter fewer bytes written per
    # event end to end, docs/buffer.md). Freed pages keep their old rows until reused: salvage
    # skips the freelist (pages.py); a delivered event found there again is only a duplicate.
    conn.execute("PRAGMA secure_delete = FAST")
