"""Helpers shared by the buffer tests (real SQLite files, an injected clock)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.buffer.api import OutEvent
from agent.config import BufferConfig
from agent.model import BarcodeRead, TagRead
from tests.support.clock import T0 as T0  # re-exported for the buffer tests
from tests.support.clock import FakeClock as FakeClock


def make_cfg(tmp_path: Path, **kw: Any) -> BufferConfig:
    kw.setdefault("path", tmp_path / "buffer.db")
    kw.setdefault("commit_interval_ms", 2.0)
    return BufferConfig(**kw)


def tag(n: int, *, reader: str = "dock-1", at: datetime | None = None) -> TagRead:
    when = at or datetime(2026, 5, 1, 12, 0, tzinfo=UTC) + timedelta(microseconds=n)
    return TagRead(reader=reader, epc=f"E280116060000208{n:08X}", read_at=when, antenna=1 + n % 4,
                   rssi_dbm=-40.5 - n % 30, pc=0x3000, phase=n % 128, frequency_khz=902_750,
                   clock_synced=n % 2 == 0)


def barcode(n: int) -> BarcodeRead:
    data = b"]d2\x1d01095011010209171719050810ABC" + bytes([n % 256])
    return BarcodeRead(reader="scanner-1", data=data, symbology="]d2",
                       read_at=datetime(2026, 5, 1, tzinfo=UTC), clock_synced=True)


def event(n: int, *, priority: int = 0, kind: str = "event", at: float = T0) -> OutEvent:
    # The shape salvage checks before it re-publishes a row (salvage.payload_problem).
    payload = (f'{{"type": "ObjectEvent", "eventTime": "2026-01-01T00:00:00Z", '
               f'"eventID": "ni:///sha-256;{n:064x}", "n": {n}}}')
    return OutEvent(kind=kind, payload=payload, priority=priority, created_at_s=at)


def ro_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def size_of(path: Path) -> int:
    """Bytes of the file, 0 when it does not exist."""
    p = Path(path)
    return p.stat().st_size if p.exists() else 0
